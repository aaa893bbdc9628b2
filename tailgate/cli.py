"""The command line: `tailgate [--url URL] [--token TOKEN] [--config FILE] COMMAND ...`.

Commands: `tail STREAM...` (follow or query streams, merged by time), `streams`,
`minions`, `files MINION`. Exit statuses: `tailgate.errors.Exit` (docs/CLI.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import datetime
from typing import Any

from tailgate import api
from tailgate.config import Target, resolve
from tailgate.errors import CliError, Exit
from tailgate.follow import Follower
from tailgate.output import FORMATS, Printer
from tailgate.timespec import as_seconds, start_fields, when
from wire.names import StreamNameError, parse_selector

EXAMPLES = """examples:
  tailgate tail kafka:app-events kafka:payments --grep error --exclude healthz
  tailgate tail 'file:web-*:/var/log/nginx/error.log' --from 10m
  tailgate tail kafka:app-events --field level=error --from 2026-11-30T10:00:00Z --until 2026-11-30T11:00:00Z -o json
  tailgate streams; tailgate minions; tailgate files web-1
gateway and token: --url/--token, else TAILGATE_URL/TAILGATE_TOKEN, else the config file
  (~/.config/tailgate/config.toml: url = "...", token = "..." or token_file = "...").
exit status: 0 done, 1 failed, 2 usage or refused request, 3 gateway unreachable,
  4 token refused or expired, 5 stream forbidden, 6 not found, 130 interrupted."""


def _common(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("--url", default=default, help="the gateway, e.g. https://tailgate.example.com/")
    parser.add_argument("--token", default=default, help="a token (JWT) the gateway accepts")
    parser.add_argument("--config", default=default, help="config file (default ~/.config/tailgate/config.toml)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="tailgate",
        description="Tail Tailgate streams from a terminal.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(top, None)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shared = argparse.ArgumentParser(add_help=False)
    _common(shared, argparse.SUPPRESS)
    tail = sub.add_parser("tail", parents=[shared], help="follow streams, merged by time")
    tail.add_argument("streams", nargs="+", metavar="STREAM", help="kafka:<topic>, file:<minion or glob>:<path>, ...")
    tail.add_argument("-g", "--grep", action="append", default=[], metavar="TERM", help="keep lines holding TERM (all)")
    tail.add_argument("-e", "--regex", default="", help="keep lines matching this RE2 regex")
    tail.add_argument("-x", "--exclude", action="append", default=[], metavar="TERM", help="drop lines holding TERM")
    tail.add_argument("--field", action="append", default=[], metavar="KEY=VALUE", help="meta field equals")
    tail.add_argument("-i", "--ignore-case", action="store_true", help="fold case in every term, regex and field")
    tail.add_argument("--from", dest="start", metavar="WHEN", help="history from a time (10m, ISO 8601) or a line id")
    tail.add_argument("--until", metavar="WHEN", help="history up to a time; then stop")
    tail.add_argument("-n", "--backlog", type=int, default=10, metavar="N", help="last N lines first (default 10)")
    tail.add_argument("-o", "--output", choices=FORMATS, default="pretty", help="line format (default pretty)")
    tail.add_argument("--follow", action=argparse.BooleanOptionalAction, default=True, help="go on with live lines")
    tail.add_argument("--no-color", action="store_true", help="no colours (also: NO_COLOR set, or not a terminal)")
    tail.add_argument("--merge-window", type=float, default=0.3, metavar="S", help=argparse.SUPPRESS)
    tail.add_argument("--retry-for", type=float, default=300.0, metavar="S", help="reconnect for S seconds at most")
    for name, text in (("streams", "streams that published recently"), ("minions", "the Salt minions")):
        sub.add_parser(name, parents=[shared], help=text).add_argument("-o", "--output", choices=("pretty", "json"))
    files = sub.add_parser("files", parents=[shared], help="the log files a minion offers")
    files.add_argument("minion")
    files.add_argument("-o", "--output", choices=("pretty", "json"))
    return top


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, str] = {}
    for pair in args.field:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise CliError(Exit.USAGE, f"--field {pair!r}: give KEY=VALUE, e.g. level=error or http.status=500")
        fields[key] = value
    out: dict[str, Any] = {}
    for name, value in (("keyword", args.grep), ("regex", args.regex), ("exclude", args.exclude), ("fields", fields)):
        if value:
            out[name] = value
    if args.ignore_case:
        out["ignore_case"] = True
    return out


def tail(target: Target, args: argparse.Namespace) -> Exit:
    for name in args.streams:
        try:
            parse_selector(name)
        except StreamNameError as exc:
            raise CliError(Exit.USAGE, f"{name!r}: {exc}") from None
    if args.backlog < 0:
        raise CliError(Exit.USAGE, "--backlog must be 0 or more")
    now = time.time()
    first = start_fields(args.start, now)
    if "since" not in first and "from" not in first and args.backlog:
        first["backlog"] = args.backlog
    until = when("--until", args.until, now) if args.until else (now if not args.follow else None)
    if until is not None:
        if "from" in first and as_seconds(first["from"]) >= as_seconds(until):
            raise CliError(Exit.USAGE, "--until must be later than --from")
        first["until"] = until
    color = args.output == "pretty" and not args.no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()
    several = len(args.streams) > 1 or any("*" in n or "?" in n for n in args.streams)
    printer = Printer(args.output, color, several)
    follower = Follower(
        target,
        list(dict.fromkeys(args.streams)),
        _fields(args),
        first,
        until is not None,
        printer,
        args.merge_window,
        args.retry_for,
    )
    return asyncio.run(follower.run())


def listing(target: Target, args: argparse.Namespace) -> Exit:
    if args.command == "streams":
        data: Any = api.streams(target)
        rows = [(s["stream"], s.get("kind", ""), f"{s.get('rate', 0):g}/s", _ago(s.get("last_seen"))) for s in data]
    elif args.command == "minions":
        data = api.minions(target)
        if not data.get("enabled", True):
            raise CliError(Exit.FAILED, "file streams are off on this gateway (salt.mode: off)")
        rows = [(m,) for m in data.get("minions", [])]
    else:
        data = api.files(target, args.minion)
        rows = [(f["path"], str(f.get("size", "")), f["stream"]) for f in data.get("files", [])]
    if args.output == "json":
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return Exit.OK
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(len(rows[0]))] if rows else []
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return Exit.OK


def _ago(ts: Any) -> str:
    return datetime.fromtimestamp(ts).isoformat(timespec="seconds") if isinstance(ts, int | float) and ts else ""


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        target = resolve(args.url, args.token, args.config, os.environ)
        return tail(target, args) if args.command == "tail" else listing(target, args)
    except CliError as exc:
        print(f"tailgate: {exc.message}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return Exit.INTERRUPTED
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (| head): not an error worth a traceback
        return Exit.OK
