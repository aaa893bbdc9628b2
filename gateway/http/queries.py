"""A subscribe's filter fields and history fields, read and validated (docs/PROTOCOL.md).

Filter: `keyword` (a string, or a list of terms that must all be in the text), `regex`
(RE2), `exclude` (terms none of which may be in the text), `fields` (an object of meta
field path -> value, each to be equal), `ignore_case`. Every term, path and value is at
most `gateway.max_pattern_chars` characters (`too_large`, limit ``pattern``), and one
subscribe holds at most `gateway.max_filter_terms` keyword terms, excluded terms and
fields together (`too_large`, limit ``filter_terms``).

History: `backlog`, `since` (a line id) with `epoch` (its history's), `from` and `until` (epoch seconds, or ISO 8601
text; without an offset, UTC), `around` (a line id) with `context`; `caught_up` (true:
say where history ends). Times become ids here (ids are time-ordered: `<ms>-<seq>`), so
the rest of the gateway only knows ids.

Text is canonical from here on: a term, path, value or regex holding a lone surrogate is
refused with `bad_request`, never repaired, since a repaired one would match something
the client did not ask for (wire/text.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.fanout.filters import FilterError, LineFilter, compile_filter
from gateway.fanout.query import Query, id_before, time_id
from wire.codes import ErrorCode, ProtocolError
from wire.envelope import LineId, parse_id
from wire.epoch import parse_epoch
from wire.text import has_lone_surrogate

MAX_TIME = 253402300800.0  # 10000-01-01T00:00:00Z, in epoch seconds
MAX_TIME_TEXT = 64
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Limits:
    """The gateway settings a subscribe is checked against."""

    max_backlog: int = 10_000
    max_pattern_chars: int = 1_000
    max_filter_terms: int = 20


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """A subscribe's filter fields, validated (compiled by `gateway.fanout.filters`)."""

    keywords: tuple[str, ...] = ()
    regex: str = ""
    ignore_case: bool = False
    exclude: tuple[str, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()

    def compile(self, stream: str) -> LineFilter:
        """The filter, or `bad_request` when RE2 refuses the regex."""
        try:
            return compile_filter(self.keywords, self.regex, self.ignore_case, self.exclude, self.fields)
        except FilterError as exc:
            raise ProtocolError(ErrorCode.BAD_REQUEST, str(exc), stream) from None


def _bad(message: str, stream: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_REQUEST, message, stream)


def _text(what: str, value: Any, stream: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise _bad(f"{what} must be a string", stream)
    if has_lone_surrogate(value):
        raise _bad(f"{what} must be Unicode text: it holds a lone surrogate (U+D800-U+DFFF)", stream)
    if len(value) > limits.max_pattern_chars:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"{what} longer than {limits.max_pattern_chars} characters", stream, "pattern"
        )
    return value


def _terms(what: str, value: Any, stream: str, limits: Limits) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    return tuple(t for t in (_text(what, item, stream, limits) for item in items) if t)


def _fields(value: Any, stream: str, limits: Limits) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise _bad('fields must be an object of meta field -> value, e.g. {"level": "error"}', stream)
    out = []
    for path, wanted in value.items():
        _text("a fields path", path, stream, limits)
        if not path or "" in path.split("."):
            raise _bad(f"fields path {path[:80]!r}: names joined by dots, none empty (e.g. http.status)", stream)
        if isinstance(wanted, bool):
            wanted = "true" if wanted else "false"
        elif isinstance(wanted, int | float) and math.isfinite(wanted):
            wanted = repr(wanted) if isinstance(wanted, float) else str(wanted)
        elif not isinstance(wanted, str):
            raise _bad(f"fields value of {path[:80]!r} must be a string, a number or true/false", stream)
        out.append((path, _text(f"fields value of {path[:80]!r}", wanted, stream, limits)))
    return tuple(out)


def parse_filter(msg: dict[str, Any], stream: str, limits: Limits) -> FilterSpec:
    keywords = _terms("keyword", msg.get("keyword"), stream, limits)
    regex = msg.get("regex")
    regex = "" if regex is None else _text("regex", regex, stream, limits)
    exclude = _terms("exclude", msg.get("exclude"), stream, limits)
    fields = _fields(msg.get("fields"), stream, limits)
    ignore_case = msg.get("ignore_case", False)
    if not isinstance(ignore_case, bool):
        raise _bad("ignore_case must be true or false", stream)
    terms = len(keywords) + len(exclude) + len(fields)
    if terms > limits.max_filter_terms:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"at most {limits.max_filter_terms} keyword terms, excluded terms and fields together ({terms} given)",
            stream,
            "filter_terms",
        )
    return FilterSpec(keywords, regex, ignore_case, exclude, fields)


def _count(what: str, value: Any, stream: str, limits: Limits) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(f"{what} must be a non-negative integer", stream)
    if value > limits.max_backlog:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"{what} is limited to {limits.max_backlog} lines", stream, "backlog")
    return value


def _id(what: str, value: Any, stream: str) -> LineId | None:
    if value is None:
        return None
    try:
        return parse_id(value)
    except ValueError:
        raise _bad(f"{what} must be a line id such as '1700000000000-0'", stream) from None


def parse_time(value: Any) -> int:
    """Epoch seconds (a number) or ISO 8601 text as epoch milliseconds (a part of a
    millisecond dropped); ValueError if neither."""
    if isinstance(value, bool):
        raise ValueError("not a time")
    if isinstance(value, int | float):
        if not 0 <= value < MAX_TIME:
            raise ValueError("out of range")
        return math.floor(round(value * 1000, 3))  # 1.001 s is 1001 ms, whatever the float says
    if isinstance(value, str) and len(value) <= MAX_TIME_TEXT:
        when = datetime.fromisoformat(value)
        ms = (when if when.tzinfo else when.replace(tzinfo=UTC)) - EPOCH
        if not timedelta(0) <= ms < timedelta(seconds=MAX_TIME):
            raise ValueError("out of range")
        return ms // timedelta(milliseconds=1)
    raise ValueError("not a time")


def _time(what: str, value: Any, stream: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except (ValueError, OverflowError):
        raise _bad(
            f"{what} must be epoch seconds (a number) or ISO 8601 text such as '2026-11-30T10:00:00Z'", stream
        ) from None


def _epoch(msg: dict[str, Any], stream: str, since: LineId | None) -> str | None:
    epoch = msg.get("epoch")
    if epoch is None:
        return None
    if since is None:
        raise _bad("epoch is taken only with since: the epoch of the lines frame that id came in", stream)
    try:
        return parse_epoch(epoch)
    except ValueError as exc:
        raise _bad(f"invalid epoch: {exc}", stream) from None


def parse_query(msg: dict[str, Any], stream: str, limits: Limits) -> Query:
    caught_up = msg.get("caught_up", False)
    if not isinstance(caught_up, bool):
        raise _bad("caught_up must be true or false", stream)
    backlog = _count("backlog", msg.get("backlog"), stream, limits)
    since = _id("since", msg.get("since"), stream)
    epoch = _epoch(msg, stream, since)
    around = _id("around", msg.get("around"), stream)
    start, end = _time("from", msg.get("from"), stream), _time("until", msg.get("until"), stream)
    if around is not None:
        if since is not None or start is not None or end is not None or backlog:
            raise _bad("around stands alone: no since, from, until or backlog with it", stream)
        context = _count("context", msg.get("context", 10), stream, limits)
        return Query(around=around, context=context)
    if msg.get("context") is not None:
        raise _bad("context goes with around", stream)
    if start is not None and end is not None and end <= start:
        raise _bad("until must be later than from", stream)
    since_is_time = since is None and start is not None
    if since_is_time:
        since = id_before(time_id(start))  # from a time: everything after the id just before it
    until = time_id(end) if end is not None else None
    return Query(backlog, since, epoch, since_is_time, until, caught_up=caught_up)
