"""`python -m bridge`: run a bridge process (see docs/BRIDGE.md)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from bridge.redislink import Stopped
from bridge.service import Bridge
from settings import ConfigError, Settings, load


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bridge",
        description="Tailgate bridge: republishes Kafka topics onto Redis (history stream + "
        "live channel per stream), effectively once. Settings come from conf/tailgate.yaml (or "
        "TAILGATE_CONFIG) and TAILGATE_* environment variables; flags override both.",
    )
    parser.add_argument("--config", help="YAML config file")
    parser.add_argument("--topics", help="comma-separated topics (overrides bridge.topics)")
    parser.add_argument("--pattern", help="regular expression over topic names (overrides bridge.topic_pattern)")
    parser.add_argument("--instance", type=int, help="this process's index in a static split (0-based)")
    parser.add_argument("--instances", type=int, help="processes in the static split; implies --static")
    parser.add_argument("--static", action="store_true", help="static split instead of a consumer group")
    parser.add_argument("--group", help="consumer group id; also names the offsets recorded in Redis")
    parser.add_argument("--start-from", choices=["earliest", "latest"], help="where unrecorded partitions start")
    parser.add_argument("--client", choices=["kafka-python", "confluent-kafka"], help="Kafka client (bridge.client)")
    parser.add_argument("--metrics-port", type=int, help="port of /metrics (0: off)")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def apply_flags(settings: Settings, args: argparse.Namespace) -> None:
    b = settings.bridge
    if args.topics is not None:
        b.topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    if args.pattern is not None:
        b.topic_pattern = args.pattern
    if args.instances is not None:
        b.instances = args.instances
        b.use_group = False
    if args.instance is not None:
        b.instance = args.instance
        b.use_group = False
    if args.static:
        b.use_group = False
    if args.group:
        b.group_id = args.group
    if args.start_from:
        b.start_from = args.start_from
    if args.client:
        b.client = args.client
    if args.metrics_port is not None:
        b.metrics_port = args.metrics_port


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        settings = load(args.config)
        apply_flags(settings, args)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        bridge = Bridge(settings, stop)
        bridge.start()
    except (ConfigError, ValueError) as exc:
        print(f"bridge: configuration error: {exc}", file=sys.stderr)
        return 2
    except Stopped:
        return 0
    bridge.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
