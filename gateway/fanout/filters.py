"""Server-side line filters: keyword terms (all must be in the text), an RE2 regex,
excluded terms (none may be), equality on fields of the line's JSON `meta`, case folding.

Regexes go through RE2 (google-re2), which runs in time linear in the input, so no
client pattern can hang the process. Filters are values: two subscriptions with equal
`key`s share one filtering pass and one encoded frame per batch, so a filter costs once
per distinct filter and line, however many viewers share it. Terms are kept sorted and
without repeats in the key (AND and "none of" do not depend on order), so the same filter
written in another order still shares. The parts stay readable on `LineFilter`
(`keywords`, `exclude`, `fields`...), so an evaluator may also take all of a stream's
distinct filters in one pass over a batch (text folded once per line).

A field path is read inside `meta`: `level` is `meta.level`, dots reach into nested
objects (`http.status`), and a leading `meta.` names `meta` itself (`meta.service` is
`service`). A field's value is text: a meta string equals it, a number or boolean
equals it when its JSON text does (`500` matches `"500"`, `true` matches `"true"`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import re2

Line = Mapping[str, Any]
FilterKey = tuple[tuple[str, ...], str, bool, tuple[str, ...], tuple[tuple[str, str], ...]]


class FilterError(ValueError):
    """A filter the client must fix (bad pattern, too long); the message says why."""


@dataclass(frozen=True, slots=True)
class LineFilter:
    """A compiled filter; `match(line)` decides whether a line (its dict) is sent."""

    keywords: tuple[str, ...] = ()
    regex: str = ""
    ignore_case: bool = False
    exclude: tuple[str, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()
    match: Callable[[Line], bool] | None = None

    @property
    def key(self) -> FilterKey:
        return (self.keywords, self.regex, self.ignore_case, self.exclude, self.fields)

    @property
    def passes_all(self) -> bool:
        return self.match is None


def field_path(path: str) -> tuple[str, ...]:
    """The keys a field path walks inside `meta`."""
    parts = tuple(path.split("."))
    return parts[1:] if parts[0] == "meta" and len(parts) > 1 else parts


def _json_text(value: Any) -> str | None:
    """A meta scalar as the text a field value is compared with (None: never equal)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return None


def _field_test(path: str, wanted: str, fold: bool) -> Callable[[Line], bool]:
    keys = field_path(path)
    want = wanted.casefold() if fold else wanted

    def test(line: Line) -> bool:
        value: Any = line.get("meta")
        for key in keys:
            if not isinstance(value, dict):
                return False
            value = value.get(key)
        text = _json_text(value)
        if text is None:
            return False
        return (text.casefold() if fold else text) == want

    return test


def _regex_search(regex: str, ignore_case: bool) -> Callable[[str], Any]:
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not ignore_case
    try:
        return re2.compile(regex, options).search
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise FilterError(f"invalid regex (RE2 syntax): {reason}") from None


def _terms(value: str | Iterable[str]) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value)
    return tuple(sorted({t for t in items if t}))


def compile_filter(
    keyword: str | Iterable[str] = "",
    regex: str = "",
    ignore_case: bool = False,
    exclude: Iterable[str] = (),
    fields: Mapping[str, str] | Iterable[tuple[str, str]] = (),
) -> LineFilter:
    """Build a filter: every keyword term, the regex and every field must match, and no
    excluded term may be in the text. `ignore_case` applies to all of them."""
    keywords, excluded = _terms(keyword), _terms(exclude)
    pairs = tuple(sorted(dict(fields.items() if isinstance(fields, Mapping) else fields).items()))
    if not (keywords or regex or excluded or pairs):
        return LineFilter()
    fold = ignore_case
    words = tuple(t.casefold() for t in keywords) if fold else keywords
    nots = tuple(t.casefold() for t in excluded) if fold else excluded
    search = _regex_search(regex, ignore_case) if regex else None
    field_tests = tuple(_field_test(path, value, fold) for path, value in pairs)

    def match(line: Line) -> bool:
        text = line["text"]
        # the cheap substring tests first; the regex and the meta walk only for survivors
        folded = text.casefold() if fold and (words or nots) else text
        if not all(w in folded for w in words) or any(n in folded for n in nots):
            return False
        if search is not None and search(text) is None:
            return False
        return all(test(line) for test in field_tests)

    return LineFilter(keywords, regex, ignore_case, excluded, pairs, match)
