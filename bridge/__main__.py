"""`python -m bridge`: run a bridge process."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from bridge.consumer import Bridge
from settings import ConfigError, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridge",
        description="Tailgate bridge: republishes Kafka topics onto Redis (history stream + "
        "live channel per stream). Settings come from conf/tailgate.yaml (or TAILGATE_CONFIG) "
        "and TAILGATE_* environment variables; flags override both.",
    )
    parser.add_argument("--config", help="YAML config file")
    parser.add_argument("--topics", help="comma-separated topics (overrides bridge.topics)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load(args.config)
        if args.topics:
            settings.bridge.topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    except ConfigError as exc:
        print(f"bridge: configuration error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Bridge(settings, stop).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
