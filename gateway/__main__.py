"""`python -m gateway`: run a gateway (one process, or `--workers N` under a supervisor);
`python -m gateway token`: mint a viewer token."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import resource
import sys
from pathlib import Path

from gateway.access.hosts import HostPolicy, is_loopback
from gateway.access.identity import Authenticator
from gateway.access.tokens import token_main
from gateway.app import Gateway
from gateway.workers import Supervisor, WorkerLink, worker_count
from settings import ConfigError, Settings, load
from wire.connect import RedisTarget, RedisTargetError

log = logging.getLogger("gateway")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gateway",
        description="Tailgate gateway: serves the console, the HTTP API and /ws, fanning "
        "Redis pub/sub out to WebSocket viewers. Settings come from conf/tailgate.yaml "
        "(or TAILGATE_CONFIG) and TAILGATE_* environment variables; flags override both.",
        epilog="Mint a token for a viewer: python -m gateway token --help",
    )
    parser.add_argument("--config", help="YAML config file (default: $TAILGATE_CONFIG or conf/tailgate.yaml)")
    parser.add_argument("--host", help="address to listen on (default from gateway.host)")
    parser.add_argument("--port", type=int, help="port to listen on (default from gateway.port)")
    parser.add_argument(
        "--workers",
        type=int,
        help="worker processes sharing the port, each with its own Redis connections; 0: one per core "
        "(default from gateway.workers)",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    # Set by the supervisor on each worker it starts (gateway.workers), never by hand.
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-fds", help=argparse.SUPPRESS)
    parser.add_argument("--worker-dir", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def worker_args(args: argparse.Namespace) -> list[str]:
    """The command line every worker of a supervisor gets (before its own --worker flags)."""
    out = ["--log-level", args.log_level]
    for flag in ("config", "host", "port"):
        value = getattr(args, flag)
        if value is not None:
            out += [f"--{flag}", str(value)]
    return out


def check_bind(settings: Settings) -> None:
    """With authentication off, refuse to listen beyond loopback unless told it is fine."""
    host = settings.gateway.host
    if settings.auth.enabled:
        return
    if is_loopback(host):
        log.warning("authentication is OFF: listening on loopback (%s) only", host)
        return
    if not settings.gateway.insecure_bind:
        raise ConfigError(
            f"authentication is off, so the gateway will not listen on {host!r}: set "
            "TAILGATE_AUTH_SECRET or TAILGATE_AUTH_PUBLIC_KEY, or gateway.insecure_bind: true"
        )
    log.warning(
        "authentication is OFF and the gateway listens on %s: anyone who can reach it sees every log "
        "(browsers must address it by a loopback name or one of gateway.allowed_hosts: %s)",
        host,
        ", ".join(settings.gateway.allowed_hosts) or "none",
    )


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit and return it. Every viewer
    and every connection still sending its request head holds a descriptor; at a
    common default of 1024 a few hundred half-open sockets would lock out viewers and
    the gateway's own Redis reconnects."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # e.g. an unlimited hard limit the kernel will not take as soft
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, hard, exc)
    log.info("open files limit: %d (hard limit %d)", soft, hard)
    return soft


POSITIVE = (
    "max_queue_bytes",
    "slow_client_timeout",
    "drain_timeout",
    "max_frame_bytes",
    "max_subscriptions",
    "max_backlog",
    "max_history_bytes",
    "history_connections",
    "max_pattern_chars",
    "max_filter_terms",
    "max_glob_minions",
    "control_rate",
    "control_burst",
    "catalog_window",
    "rate_interval",
    "header_timeout",
    "body_timeout",
)


SALT_POSITIVE = ("workers", "max_calls_per_user", "queue_timeout", "list_files_rate", "list_files_burst")


def check_values(settings: Settings) -> None:
    """Refuse sizes, limits and intervals that cannot work (zero or negative), and Redis
    settings that name no Redis (or a key prefix the mode's layout refuses)."""
    try:
        RedisTarget.of(settings.redis).keys(settings.redis.prefix)
    except RedisTargetError as exc:
        raise ConfigError(str(exc)) from None
    for section, positive, non_negative in (
        ("gateway", POSITIVE, ("coalesce_ms", "ping_interval", "ping_timeout", "drain_grace", "workers")),
        ("salt", SALT_POSITIVE, ("max_streams", "max_streams_per_user")),
    ):
        conf = getattr(settings, section)
        for name in positive:
            if getattr(conf, name) <= 0:
                raise ConfigError(f"{section}.{name} must be greater than 0, not {getattr(conf, name)!r}")
        for name in non_negative:
            if getattr(conf, name) < 0:
                raise ConfigError(f"{section}.{name} must not be negative, not {getattr(conf, name)!r}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["token"]:
        return token_main(argv[1:])
    args = parse_args(argv)
    who = f" [worker {args.worker}]" if args.worker is not None else ""
    logging.basicConfig(level=args.log_level.upper(), format=f"%(asctime)s %(levelname)s{who} %(name)s: %(message)s")
    try:
        settings = load(args.config)
        if args.host:
            settings.gateway.host = args.host
        if args.port is not None:
            settings.gateway.port = args.port
        if args.workers is not None:
            settings.gateway.workers = args.workers
        check_values(settings)
        if args.worker is None:  # a worker's supervisor has checked (and said) it
            check_bind(settings)
        auth = Authenticator(settings.auth)  # a bad key or secret fails the start, not the first viewer
        HostPolicy(settings.gateway.allowed_hosts)  # likewise a host name that is not one
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.worker is not None:
        fds = [int(fd) for fd in args.worker_fds.split(",")]
        gateway = Gateway(settings, WorkerLink(args.worker, fds, Path(args.worker_dir)))
        settle_heap()
        asyncio.run(gateway.serve())
        return 0
    if auth.enabled:
        log.info(
            "authentication ON: tokens signed with %s%s",
            ", ".join(auth.algorithms) or "(none: proxy header only)",
            f"; user header {settings.auth.proxy_user_header} from {settings.auth.trusted_proxies}"
            if settings.auth.proxy_user_header
            else "",
        )
    raise_open_files_limit()  # before any worker starts: they inherit it
    count = worker_count(settings.gateway.workers)
    if count > 1:
        return asyncio.run(Supervisor(settings, count, worker_args(args)).run())
    gateway = Gateway(settings)
    settle_heap()
    asyncio.run(gateway.serve())
    return 0


def settle_heap() -> None:
    """Put everything built at start-up (about 40,000 objects: modules, classes, settings,
    the gateway's parts) out of the cyclic collector's reach for the process's life. A full
    collection (Python runs one when many objects have survived, e.g. while viewers connect)
    walks every tracked object and stops the event loop meanwhile: 10-26 ms with this heap
    on the benchmark machine, half of that without it (docs/BENCHMARKS.md, peers).
    Collected first, so no start-up garbage is kept."""
    gc.collect()
    gc.freeze()


def exit_now(code: int) -> None:
    """Exit without joining worker threads. A Salt call still in flight in the executor
    (bounded only by salt.timeout) has no one left to answer, and must not hold the
    process past its drain: a load balancer expects it gone within 5 s of the end of
    `gateway.drain_grace`."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
