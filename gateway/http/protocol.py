"""Commands clients send on /ws, parsed and validated completely.

Handlers only ever see well-formed commands; every problem becomes a `ProtocolError`
with a contract error code (wire/codes.py). The frames themselves: docs/PROTOCOL.md.
Text is canonical from here on: a stream, keyword or regex holding a lone surrogate (a
JSON escape such as ``\\ud800``) is refused with `bad_request`, never repaired, since a
repaired one would name or match something the client did not ask for (wire/text.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from wire import StreamName, StreamNameError, parse_id, parse_stream
from wire.codes import ErrorCode, ProtocolError
from wire.envelope import LineId
from wire.text import has_lone_surrogate


@dataclass(frozen=True, slots=True)
class Subscribe:
    stream: StreamName
    keyword: str = ""
    regex: str = ""
    ignore_case: bool = False
    backlog: int = 0
    since: LineId | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    stream: StreamName


@dataclass(frozen=True, slots=True)
class Ping:
    pass


Command = Subscribe | Unsubscribe | Ping


def _stream(msg: dict[str, Any]) -> StreamName:
    try:
        return parse_stream(msg.get("stream"))
    except StreamNameError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"invalid stream: {exc}", _echo(msg.get("stream"))) from None


def _echo(value: Any) -> str | None:
    return value[:512] if isinstance(value, str) else None


def parse_command(raw: str | bytes, max_backlog: int, max_pattern_chars: int) -> Command:
    """Parse one client frame into a command, or raise `ProtocolError`."""
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame is not valid JSON") from None
    if not isinstance(msg, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame must be a JSON object")
    op = msg.get("op")
    if op == "ping":
        return Ping()
    if op == "unsubscribe":
        return Unsubscribe(_stream(msg))
    if op != "subscribe":
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"unknown op: {str(op)[:64]!r}" if op is not None else "missing op")
    stream = _stream(msg)
    name = stream.name
    keyword, regex = msg.get("keyword", ""), msg.get("regex", "")
    for field, value in (("keyword", keyword), ("regex", regex)):
        if value is None:
            continue
        if not isinstance(value, str):
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"{field} must be a string", name)
        if has_lone_surrogate(value):
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, f"{field} must be Unicode text: it holds a lone surrogate (U+D800-U+DFFF)", name
            )
        if len(value) > max_pattern_chars:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"{field} longer than {max_pattern_chars} characters", name, "pattern"
            )
    ignore_case = msg.get("ignore_case", False)
    if not isinstance(ignore_case, bool):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "ignore_case must be true or false", name)
    backlog = msg.get("backlog", 0)
    if backlog is None:
        backlog = 0
    if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 0:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "backlog must be a non-negative integer", name)
    if backlog > max_backlog:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"backlog is limited to {max_backlog} lines", name, "backlog")
    since = msg.get("since")
    since_id = None
    if since is not None:
        try:
            since_id = parse_id(since)
        except ValueError:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, "since must be a line id such as '1700000000000-0'", name
            ) from None
    return Subscribe(stream, keyword or "", regex or "", ignore_case, backlog, since_id)


def peek_stream(message: str | bytes) -> str | None:
    """The `stream` a refused frame names, if it is readable, to echo in the error."""
    try:
        msg = json.loads(message)
    except (ValueError, UnicodeDecodeError):
        return None
    stream = msg.get("stream") if isinstance(msg, dict) else None
    return stream[:512] if isinstance(stream, str) else None
