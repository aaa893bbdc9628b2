"""Server-side line filters: keyword (substring), regex (RE2) and case folding.

Regexes go through RE2 (google-re2), which runs in time linear in the input, so no
client pattern can hang the process. Filters are values: two subscriptions with equal
`key`s share one filtering pass and one encoded frame per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import re2


class FilterError(ValueError):
    """A filter the client must fix (bad pattern, too long); the message says why."""


@dataclass(frozen=True, slots=True)
class LineFilter:
    """A compiled filter; `match(text)` decides whether a line is sent."""

    keyword: str = ""
    regex: str = ""
    ignore_case: bool = False
    match: Callable[[str], bool] | None = None

    @property
    def key(self) -> tuple[str, str, bool]:
        return (self.keyword, self.regex, self.ignore_case)

    @property
    def passes_all(self) -> bool:
        return self.match is None


def compile_filter(keyword: str = "", regex: str = "", ignore_case: bool = False) -> LineFilter:
    """Build a filter; both keyword and regex must match when both are given."""
    if not keyword and not regex:
        return LineFilter()
    tests: list[Callable[[str], bool]] = []
    if keyword:
        if ignore_case:
            folded = keyword.casefold()
            tests.append(lambda text: folded in text.casefold())
        else:
            tests.append(lambda text: keyword in text)
    if regex:
        options = re2.Options()
        options.log_errors = False
        options.case_sensitive = not ignore_case
        try:
            search = re2.compile(regex, options).search
        except re2.error as exc:
            reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise FilterError(f"invalid regex (RE2 syntax): {reason}") from None
        tests.append(lambda text: search(text) is not None)
    match = tests[0] if len(tests) == 1 else (lambda text: all(t(text) for t in tests))
    return LineFilter(keyword, regex, ignore_case, match)
