"""Frames on /ws: parsing what clients send, encoding what the server sends.

Client frames are validated completely here, so handlers only ever see well-formed
commands; every problem becomes a `ProtocolError` with a contract error code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from wire import StreamName, StreamNameError, parse_id, parse_stream
from wire.envelope import LineId


class ProtocolError(Exception):
    """A client request the server answers with an `error` frame."""

    def __init__(self, code: str, message: str, stream: str | None = None, limit: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.stream = stream
        self.limit = limit  # which abuse limit refused it (counted in metrics), if one did


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
        raise ProtocolError("bad_request", f"invalid stream: {exc}", _echo(msg.get("stream"))) from None


def _echo(value: Any) -> str | None:
    return value[:512] if isinstance(value, str) else None


def parse_command(raw: str | bytes, max_backlog: int, max_pattern_chars: int) -> Command:
    """Parse one client frame into a command, or raise `ProtocolError`."""
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("bad_request", "frame is not valid JSON") from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad_request", "frame must be a JSON object")
    op = msg.get("op")
    if op == "ping":
        return Ping()
    if op == "unsubscribe":
        return Unsubscribe(_stream(msg))
    if op != "subscribe":
        raise ProtocolError("bad_request", f"unknown op: {str(op)[:64]!r}" if op is not None else "missing op")
    stream = _stream(msg)
    name = stream.name
    keyword, regex = msg.get("keyword", ""), msg.get("regex", "")
    for field, value in (("keyword", keyword), ("regex", regex)):
        if value is None:
            continue
        if not isinstance(value, str):
            raise ProtocolError("bad_request", f"{field} must be a string", name)
        if len(value) > max_pattern_chars:
            raise ProtocolError("too_large", f"{field} longer than {max_pattern_chars} characters", name, "pattern")
    ignore_case = msg.get("ignore_case", False)
    if not isinstance(ignore_case, bool):
        raise ProtocolError("bad_request", "ignore_case must be true or false", name)
    backlog = msg.get("backlog", 0)
    if backlog is None:
        backlog = 0
    if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 0:
        raise ProtocolError("bad_request", "backlog must be a non-negative integer", name)
    if backlog > max_backlog:
        raise ProtocolError("too_large", f"backlog is limited to {max_backlog} lines", name, "backlog")
    since = msg.get("since")
    since_id = None
    if since is not None:
        try:
            since_id = parse_id(since)
        except ValueError:
            raise ProtocolError("bad_request", "since must be a line id such as '1700000000000-0'", name) from None
    return Subscribe(stream, keyword or "", regex or "", ignore_case, backlog, since_id)


def encode(obj: dict[str, Any]) -> bytes:
    """Encode a control frame."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def error_frame(code: str, message: str, stream: str | None = None) -> bytes:
    body: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if stream is not None:
        body["stream"] = stream
    return encode(body)


def lines_prefix(stream: str) -> bytes:
    """The bytes before a JSON array of lines in a `lines` frame for `stream`."""
    return b'{"type":"lines","stream":' + json.dumps(stream, ensure_ascii=False).encode() + b',"lines":'


def lines_frame(stream: str, lines: list[dict[str, Any]]) -> bytes:
    """A `lines` frame from parsed lines (history, filtered batches)."""
    return lines_prefix(stream) + json.dumps(lines, ensure_ascii=False, separators=(",", ":")).encode() + b"}"


def ws_text_frame(payload: bytes) -> bytes:
    """A final, unmasked, uncompressed WebSocket text frame (RFC 6455, 5.2) carrying
    `payload`: what the server writes to every client's socket for one shared batch."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload
