"""Commands clients send on /ws, parsed and validated completely.

Handlers only ever see well-formed commands; every problem becomes a `ProtocolError`
with a contract error code (wire/codes.py). The frames themselves: docs/PROTOCOL.md. A
subscribe's filter and history fields are read by `gateway.http.queries`; its stream may
be a minion glob (`wire.names.FileGlob`), which the handler expands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.fanout.query import Query
from gateway.http.queries import FilterSpec, Limits, parse_filter, parse_query
from wire.codes import ErrorCode, ProtocolError
from wire.names import FileGlob, StreamName, StreamNameError, parse_selector


@dataclass(frozen=True, slots=True)
class Subscribe:
    stream: StreamName | FileGlob
    filter: FilterSpec
    query: Query


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    stream: StreamName | FileGlob


@dataclass(frozen=True, slots=True)
class Ping:
    pass


Command = Subscribe | Unsubscribe | Ping


def _stream(msg: dict[str, Any]) -> StreamName | FileGlob:
    try:
        return parse_selector(msg.get("stream"))
    except StreamNameError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"invalid stream: {exc}", _echo(msg.get("stream"))) from None


def _echo(value: Any) -> str | None:
    return value[:512] if isinstance(value, str) else None


def parse_command(raw: str | bytes, limits: Limits) -> Command:
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
    return Subscribe(stream, parse_filter(msg, stream.name, limits), parse_query(msg, stream.name, limits))


def peek_stream(message: str | bytes) -> str | None:
    """The `stream` a refused frame names, if it is readable, to echo in the error."""
    try:
        msg = json.loads(message)
    except (ValueError, UnicodeDecodeError):
        return None
    stream = msg.get("stream") if isinstance(msg, dict) else None
    return stream[:512] if isinstance(stream, str) else None
