"""The line envelope and line ids.

A producer encodes each line once, as the body of a JSON object without its braces and
without its id (``"ts":1.5,"text":"...","meta":{...}``): the publish step stores that
fragment in history and wraps it as ``{"id":"<id>",<fragment>}`` once Redis has given
the line its id. A live channel message is a small header then a JSON array of lines::

    <first id> <last id> <count> <epoch>\\n[{"id":..,"ts":..,"text":..}, ...]

so the gateway can order, deduplicate and forward a batch without parsing it. `<epoch>`
is the history's epoch (`wire.epoch`); producers from before epochs leave it out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring  # type: ignore[attr-defined]  # the C quoter json.dumps uses
from typing import Any, NamedTuple

DEFAULT_MAX_LINE_BYTES = 64 * 1024
TRUNCATION_MARKER = " …[truncated {n} bytes]"

LineId = tuple[int, int]


@dataclass(slots=True)
class Line:
    """One log line before it has an id: when it happened, its text, optional metadata."""

    ts: float
    text: str
    meta: dict[str, Any] | None = field(default=None)


def encode_line(line: Line) -> bytes:
    """Encode a line as the id-less JSON fragment the publish step stores and publishes.

    A fragment never holds a raw newline byte (JSON escapes control characters in every
    string); the publish step relies on that to send a stream's fragments joined by
    newlines."""
    body: dict[str, Any] = {"ts": round(line.ts, 6), "text": line.text}
    if line.meta:
        body["meta"] = line.meta
    # backslashreplace turns a lone surrogate (possible in decoded JSON meta) into a
    # valid JSON escape instead of failing the whole batch.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))[1:-1].encode("utf-8", "backslashreplace")


_last_head: tuple[float | None, str] = (None, "")


def _head(ts: float) -> str:
    """'"ts":<ts>,"text":' as json.dumps writes it; the last one is kept, since the lines
    of a busy stream mostly share their timestamp with the previous line."""
    global _last_head
    last = _last_head  # one tuple read: safe if threads share the module
    # only a non-zero float is kept: 5 == 5.0 and -0.0 == 0.0, but they are written differently
    if last[0] == ts and type(ts) is float:
        return last[1]
    t = round(ts, 6)
    # json.dumps writes a finite number as its repr; only nan and infinities differ
    head = '"ts":' + (repr(t) if t - t == 0 else json.dumps(t)) + ',"text":'
    if type(ts) is float and ts:
        _last_head = (ts, head)
    return head


def encode_lines(ts: float, texts: Sequence[str], meta: dict[str, Any] | None = None) -> list[bytes]:
    """`encode_line` for several lines sharing a timestamp and meta (a chunk from one
    Kafka message), byte for byte the same, without a dict and a dumps call per line.
    Like `encode_line`, never a raw newline: `encode_basestring` escapes it."""
    head = _head(ts)
    tail = ',"meta":' + json.dumps(meta, ensure_ascii=False, separators=(",", ":")) if meta else ""
    quote = encode_basestring
    if len(texts) == 1:
        return [(head + quote(texts[0]) + tail).encode("utf-8", "backslashreplace")]
    return [(head + quote(text) + tail).encode("utf-8", "backslashreplace") for text in texts]


# The bytes JSON escapes inside a string (encode_basestring): control characters, '"', '\\'.
JSON_ESCAPED = bytes(range(0x20)) + b'"\\'


def verbatim_prefix(ts: float) -> bytes:
    """What precedes a raw value in its fragment when the value can go in verbatim:
    for ASCII bytes `v` holding none of `JSON_ESCAPED`, ``verbatim_prefix(ts) + v + b'"'``
    is byte for byte ``encode_text(ts, v.decode())``, without decoding or quoting (the
    bridge's commonest line)."""
    return (_head(ts) + '"').encode()


def encode_text(ts: float, text: str) -> bytes:
    """`encode_line` for one line without meta, byte for byte the same; the cheapest form."""
    return (_head(ts) + encode_basestring(text)).encode("utf-8", "backslashreplace")


def clean_text(raw: bytes | str, max_bytes: int = DEFAULT_MAX_LINE_BYTES) -> str:
    """Turn raw line bytes into display text: bad UTF-8 replaced, long lines truncated
    with a visible marker saying how much was cut."""
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
    if len(data) > max_bytes:
        cut = data[:max_bytes]
        return cut.decode("utf-8", "ignore") + TRUNCATION_MARKER.format(n=len(data) - len(cut))
    return data.decode("utf-8", "replace")


def parse_id(line_id: str | bytes) -> LineId:
    """Parse a Redis Stream id (``"<ms>-<seq>"``) into a comparable tuple.

    Raises ValueError for anything else, so a client's `since` can be validated.
    """
    if isinstance(line_id, bytes):
        line_id = line_id.decode("ascii")
    if not isinstance(line_id, str) or len(line_id) > 41:
        raise ValueError("id must be a string like '1700000000000-0'")
    ms, dash, seq = line_id.partition("-")
    if not dash or not ms.isdigit() or not seq.isdigit() or not ms.isascii() or not seq.isascii():
        raise ValueError("id must be a string like '1700000000000-0'")
    return int(ms), int(seq)


def format_id(line_id: LineId) -> str:
    """The wire form of a parsed id."""
    return f"{line_id[0]}-{line_id[1]}"


class LiveMessage(NamedTuple):
    """A live channel message split by `frame_ids`."""

    first: LineId
    last: LineId
    count: int
    lines: bytes  # the JSON array of line objects
    epoch: str | None  # the history's epoch; None from a producer older than epochs


def frame_ids(message: bytes) -> LiveMessage:
    """Split a live channel message into its first and last id, count, JSON array of
    lines and history epoch.

    On the gateway's hot path (once per message), so it trusts the publish step's
    format instead of validating like `parse_id`; anything malformed raises ValueError.
    A header of three fields (a producer from before epochs) gives epoch None.
    """
    header, _, array = message.partition(b"\n")
    fields = header.split(b" ")
    epoch = fields.pop().decode("ascii") if len(fields) == 4 else None
    first, last, count = fields
    first_ms, first_seq = first.split(b"-")
    last_ms, last_seq = last.split(b"-")
    return LiveMessage((int(first_ms), int(first_seq)), (int(last_ms), int(last_seq)), int(count), array, epoch)


def line_object(line_id: str | bytes, fragment: bytes) -> bytes:
    """The full JSON object of a stored line, as clients receive it."""
    if isinstance(line_id, str):
        line_id = line_id.encode("ascii")
    return b'{"id":"' + line_id + b'",' + fragment + b"}"
