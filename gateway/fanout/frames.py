"""Encoding what the server sends on /ws: control frames, `lines` frames, and the
WebSocket framing of a batch shared by every client that receives it.

JSON is written strictly and canonically (wire.text.dumpb): no NaN or Infinity, which a
browser's JSON.parse rejects, and no lone surrogate, which UTF-8 cannot carry, whatever
the value holds (an echoed client string, a line an older producer stored).
"""

from __future__ import annotations

from typing import Any

from wire.text import dumpb


def encode(obj: dict[str, Any]) -> bytes:
    """Encode a control frame."""
    return dumpb(obj)


def error_frame(code: str, message: str, stream: str | None = None) -> bytes:
    body: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if stream is not None:
        body["stream"] = stream
    return encode(body)


def lines_prefix(stream: str, epoch: str | None = None) -> bytes:
    """The bytes before a JSON array of lines in a `lines` frame for `stream`, with the
    epoch of the history the lines are from when it has one (a valid epoch: [0-9a-z])."""
    with_epoch = b',"epoch":"' + epoch.encode() + b'"' if epoch else b""
    return b'{"type":"lines","stream":' + dumpb(stream) + with_epoch + b',"lines":'


def lines_frame(stream: str, lines: list[dict[str, Any]], epoch: str | None = None) -> bytes:
    """A `lines` frame from parsed lines (history, filtered batches)."""
    return lines_prefix(stream, epoch) + dumpb(lines) + b"}"


def ws_text_frame(payload: bytes) -> bytes:
    """A final, unmasked, uncompressed WebSocket text frame (RFC 6455, 5.2) carrying
    `payload`: what the server writes to every client's socket for one shared batch."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload
