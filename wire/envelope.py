"""The line envelope and line ids.

A producer encodes each line once, as the body of a JSON object without its braces and
without its id (``"ts":1.5,"text":"...","meta":{...}``): the publish step stores that
fragment in history and wraps it as ``{"id":"<id>",<fragment>}`` once Redis has given
the line its id. A live channel message is a small header then a JSON array of lines::

    <first id> <last id> <count> <epoch>\\n[{"id":..,"ts":..,"text":..}, ...]

so the gateway can order, deduplicate and forward a batch without parsing it. `<epoch>`
is the history's epoch (`wire.epoch`); producers from before epochs leave it out.

Every encoder here writes canonical text (wire/text.py): no lone surrogate, no NaN or
Infinity, whatever the caller passes, at no cost when there is nothing to change. The
readers (`read_lines`, `read_line`) are the gateway's defence against lines an older or
foreign producer stored: they never raise for what Redis holds, and hand back canonical
lines, a line they cannot read replaced by a notice carrying its id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring  # type: ignore[attr-defined]  # the C quoter json.dumps uses
from typing import Any, NamedTuple

from wire.text import canonical, canonical_str, dumpb, is_canonical, json_text, utf8

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
    return dumpb(body)[1:-1]


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
    # json.dumps writes a finite number as its repr; a time that is not finite is a bug
    head = '"ts":' + (repr(t) if t - t == 0 else json.dumps(t, allow_nan=False)) + ',"text":'
    if type(ts) is float and ts:
        _last_head = (ts, head)
    return head


def encode_lines(ts: float, texts: Sequence[str], meta: dict[str, Any] | None = None) -> list[bytes]:
    """`encode_line` for several lines sharing a timestamp and meta (a chunk from one
    Kafka message), byte for byte the same, without a dict and a dumps call per line.
    Like `encode_line`, never a raw newline: `encode_basestring` escapes it."""
    head = _head(ts)
    tail = ',"meta":' + json_text(meta) if meta else ""
    if len(texts) == 1:
        return [_fragment(head, texts[0], tail, meta)]
    return [_fragment(head, text, tail, meta) for text in texts]


def _fragment(head: str, text: str, tail: str, meta: dict[str, Any] | None) -> bytes:
    try:
        return (head + encode_basestring(text) + tail).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: made canonical, as `dumpb` does
        tail = ',"meta":' + json_text(canonical(meta)) if meta else ""
        return (head + encode_basestring(canonical_str(text)) + tail).encode("utf-8")


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
    return _fragment(_head(ts), text, "", None)


def clean_text(raw: bytes | str, max_bytes: int = DEFAULT_MAX_LINE_BYTES) -> str:
    """Turn raw line bytes into display text: bad UTF-8 replaced, long lines truncated
    with a visible marker saying how much was cut."""
    data = utf8(raw) if isinstance(raw, str) else raw
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


# The gateway's readers: lines as Redis holds them, whoever wrote them ------------------

UNREADABLE = "[tailgate] a line stored here could not be read ({why}); an older or foreign producer wrote it"
UNREADABLE_META: dict[str, Any] = {"tailgate": "unreadable"}

_RAW_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")
_OBJECT_START = re.compile(rb'\{"id":"([0-9]{1,20}-[0-9]{1,20})",')


def may_break_rule(data: bytes) -> bool:
    """Whether stored JSON may break the canonical rule (wire/text.py): a surrogate escape
    or surrogate bytes, a NaN or Infinity token. Never false when it does; true also for
    text that merely says NaN, which costs the reader a parse and nothing else. A number
    too large for a double is not looked for: no version of `wire` ever wrote one."""
    return (
        b"\\ud" in data  # backslashreplace, what wrote them, writes lowercase hex
        or b"NaN" in data
        or b"Infinity" in data
        or (b"\xed" in data and _RAW_SURROGATE.search(data) is not None)
    )


def _is_line(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("id"), str) and isinstance(obj.get("text"), str)


def _unreadable(line_id: str, why: str) -> dict[str, Any]:
    """The notice a viewer gets in place of a line that cannot be read, under its id."""
    ms = parse_id(line_id)[0]
    return {"id": line_id, "ts": ms / 1000.0, "text": UNREADABLE.format(why=why), "meta": UNREADABLE_META}


def _read_object(obj: bytes, line_id: str) -> tuple[dict[str, Any], str]:
    try:
        line = json.loads(obj)
    except RecursionError:
        return _unreadable(line_id, "nested too deeply"), "unreadable"
    except ValueError:
        return _unreadable(line_id, "not JSON"), "unreadable"
    if not _is_line(line) or line["id"] != line_id:
        return _unreadable(line_id, "not a line"), "unreadable"
    if not may_break_rule(obj) or is_canonical(line):
        return line, ""
    return canonical(line), "rewritten"


def read_line(line_id: bytes, fragment: bytes | None) -> tuple[dict[str, Any], str]:
    """A history entry (its id and its `d` field) as the line object a client gets, and
    what reading it took: "" (nothing), "rewritten" (made canonical) or "unreadable"
    (replaced by a notice under the same id). Never raises for what Redis holds."""
    text_id = line_id.decode("ascii")
    if fragment is None:
        return _unreadable(text_id, "no line field"), "unreadable"
    return _read_object(line_object(line_id, fragment), text_id)


def read_lines(array: bytes, clean: bool = False) -> tuple[list[dict[str, Any]], int, int]:
    """The lines of a live channel message's JSON array as canonical line objects, with
    how many were rewritten and how many were unreadable (see `read_line`). Lines whose
    object cannot even be found in the array are left out: no version of `wire` wrote
    such an array, and the caller learns it from the count in the message's header.
    `clean`: the caller found `may_break_rule(array)` false, so it is not looked at again."""
    lines: Any = None
    try:
        lines = json.loads(array)
        whole = isinstance(lines, list) and all(_is_line(line) for line in lines)
    except (ValueError, RecursionError):
        whole = False
    if whole and (clean or not may_break_rule(array) or is_canonical(lines)):
        return lines, 0, 0
    if whole:
        fixed = canonical(lines)
        return fixed, sum(a != b for a, b in zip(lines, fixed, strict=True)), 0
    # One line object at a time: each starts with its id (line_object), and that byte
    # sequence cannot occur inside a JSON string, where a quote is always escaped.
    starts = list(_OBJECT_START.finditer(array))
    out: list[dict[str, Any]] = []
    counts = {"": 0, "rewritten": 0, "unreadable": 0}
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(array)
        obj = array[match.start() : end].rstrip().rstrip(b"],").rstrip()
        line, how = _read_object(obj, match.group(1).decode())
        out.append(line)
        counts[how] += 1
    return out, counts["rewritten"], counts["unreadable"]
