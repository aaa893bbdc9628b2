"""Turning a Kafka message value into display lines (pure; no I/O).

Three shapes of value, chosen per route by `format`:

* ``text``: one plain line, or a chunk of lines split on newlines (a trailing newline
  ends the chunk, it does not add an empty line; ``\\r\\n`` endings lose the ``\\r``).
* ``json``: a JSON object whose text is in `text_field`; every other field is kept as
  the line's ``meta``. When that field holds a JSON object encoded as a string (a log
  shipper wrapping an application's own JSON line), that inner object is opened too:
  its `text_field` becomes the text and its other fields join ``meta``.
* ``auto``: ``json`` when the value is a JSON object carrying `text_field`, else ``text``.

Rules for bad input, each counted by kind in the caller's `errors` and never fatal:
``tombstone`` (null value) and ``empty`` (zero bytes) give no line; ``bad_utf8`` is
decoded with replacement characters; ``truncated`` lines longer than the maximum are
cut with a visible marker (wire.envelope.clean_text); ``invalid_json`` / ``not_object``
/ ``missing_field`` (json format only) publish the raw value as text, so nothing is lost;
``too_deep`` (any format) is a JSON value nested deeper than `wire.text.MAX_DEPTH`, also
published as text, so that every reader can parse every stored line.

What JSON carries that text cannot (lone surrogate escapes such as ``\ud800``, NaN,
Infinity, ``1e999``) is left in the decoded values: the envelope's encoders make it
canonical (wire/text.py) on the way to Redis, at no cost for the values that need nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from wire.envelope import clean_text
from wire.text import nested_deeper

FORMATS = ("auto", "text", "json")

Meta = dict[str, Any]


def _text(value: bytes, errors: Counter[str]) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        errors["bad_utf8"] += 1
        return value.decode("utf-8", "replace")


def _fit(text: str, max_bytes: int, errors: Counter[str]) -> str:
    """`text`, cut with the visible marker if its UTF-8 form is over `max_bytes`."""
    if len(text) * 4 <= max_bytes:
        return text
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text
    errors["truncated"] += 1
    return clean_text(data, max_bytes)


def split_chunk(text: str, max_bytes: int, errors: Counter[str]) -> list[str]:
    """The lines of a plain value: one line, or a newline-separated chunk."""
    if "\n" not in text:
        if text[-1:] == "\r":
            text = text[:-1]
        return [text if len(text) * 4 <= max_bytes else _fit(text, max_bytes, errors)]
    else:
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return [_fit(line, max_bytes, errors) for line in lines]


def split_lines(value: bytes | None, max_line_bytes: int) -> list[str]:
    """The display lines in a plain message value (kept for callers with no route)."""
    if not value:
        return []
    return split_chunk(_text(value, Counter()), max_line_bytes, Counter())


def _looks_like_object(value: bytes) -> bool:
    first = value[0]
    if first == 0x7B:  # "{"
        return True
    return first in b" \t\r\n" and value.lstrip()[:1] == b"{"


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Decoder:
    """Decodes values for one route: its format, text field and line size limit."""

    __slots__ = ("_object_starts", "format", "max_bytes", "text_field")

    def __init__(self, format: str = "auto", text_field: str = "message", max_bytes: int = 64 * 1024) -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
        if not text_field and format != "text":
            raise ValueError("text_field must be set for the json and auto formats")
        self.format = format
        self.text_field = text_field
        self.max_bytes = max_bytes
        # first bytes that send an ``auto`` value to the JSON check (see _looks_like_object)
        self._object_starts = b"{ \t\r\n" if format == "auto" else b""

    def decode(self, value: bytes | None, errors: Counter[str]) -> tuple[list[str], Meta | None]:
        """The lines of one message value and the meta they share (None for plain text)."""
        if value is None:
            errors["tombstone"] += 1
            return [], None
        if not value:
            errors["empty"] += 1
            return [], None
        if self.format == "text" or (self.format == "auto" and not _looks_like_object(value)):
            return split_chunk(_text(value, errors), self.max_bytes, errors), None
        return self._json(value, errors)

    def plain_line(self, value: bytes | None) -> str | None:
        """The text of a value that is one plain line no rule applies to (the common
        case: UTF-8, no newline, not too long, not JSON-looking under ``auto``), or None
        for anything else, which `decode` then handles. The bridge's fast path."""
        if (
            not value
            or self.format == "json"
            or len(value) > self.max_bytes
            or value[0] in self._object_starts
            or value[-1] == 0x0D  # "\r"
            or b"\n" in value
        ):
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def _json(self, value: bytes, errors: Counter[str]) -> tuple[list[str], Meta | None]:
        strict = self.format == "json"
        try:
            obj = json.loads(value)
        except UnicodeDecodeError:
            errors["bad_utf8"] += 1
            return self._json_text(value.decode("utf-8", "replace"), errors)
        except RecursionError:
            return self._too_deep(_text(value, errors), errors)
        except ValueError:
            if strict:
                errors["invalid_json"] += 1
            return split_chunk(_text(value, errors), self.max_bytes, errors), None
        return self._object(obj, value, strict, errors)

    def _json_text(self, text: str, errors: Counter[str]) -> tuple[list[str], Meta | None]:
        try:
            obj = json.loads(text)
        except RecursionError:
            return self._too_deep(text, errors)
        except ValueError:
            if self.format == "json":
                errors["invalid_json"] += 1
            return split_chunk(text, self.max_bytes, errors), None
        return self._object(obj, text.encode("utf-8"), self.format == "json", errors)

    def _too_deep(self, text: str, errors: Counter[str]) -> tuple[list[str], Meta | None]:
        errors["too_deep"] += 1
        return split_chunk(text, self.max_bytes, errors), None

    def _object(self, obj: Any, raw: bytes, strict: bool, errors: Counter[str]) -> tuple[list[str], Meta | None]:
        if nested_deeper(raw, obj):
            return self._too_deep(_text(raw, errors), errors)
        if isinstance(obj, str) and strict:
            return [_fit(obj.rstrip("\r\n"), self.max_bytes, errors)], None
        if not isinstance(obj, dict):
            if strict:
                errors["not_object"] += 1
            return split_chunk(_text(raw, errors), self.max_bytes, errors), None
        if self.text_field not in obj or obj[self.text_field] is None:
            if strict:
                errors["missing_field"] += 1
            return split_chunk(_text(raw, errors), self.max_bytes, errors), None
        meta = dict(obj)
        inner = meta.pop(self.text_field)
        if isinstance(inner, str) and inner[:1] == "{":
            try:
                nested = json.loads(inner)
            except (ValueError, RecursionError):
                nested = None
            if (
                isinstance(nested, dict)
                and nested.get(self.text_field) is not None
                and not nested_deeper(inner, nested)
            ):
                inner = nested.pop(self.text_field)
                meta.update(nested)
        text = _as_text(inner).rstrip("\r\n")
        return [_fit(text, self.max_bytes, errors)], meta or None
