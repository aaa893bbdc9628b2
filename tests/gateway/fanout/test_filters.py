"""Server-side filters select exactly what Python's `re` selects, and never hang."""

from __future__ import annotations

import re
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.fanout.filters import FilterError, compile_filter

pytestmark = pytest.mark.unit

TEXTS = [
    "GET /api/orders 200 12ms",
    "POST /api/orders 500 1200ms",
    "ERROR payment declined",
    "error: Connection reset by peer",
    "WARN slow query on orders",
    "user=alice action=login ok",
    "user=Bob action=logout",
    "καφές ☕ unicode line",
    "",
    "tab\tseparated\tvalues",
]
PATTERNS = [
    r"error",
    r"^ERROR",
    r"\b5\d\d\b",
    r"user=(alice|bob)",
    r"orders \d{3}",
    r"[0-9]+ms$",
    r"ca.és",
    r"\s",
    r"a|b",
    r"\d+ms",
]


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("ignore_case", [False, True])
def test_regex_selects_what_python_re_selects(pattern: str, ignore_case: bool) -> None:
    f = compile_filter(regex=pattern, ignore_case=ignore_case)
    py = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    assert [t for t in TEXTS if f.match(t)] == [t for t in TEXTS if py.search(t)]


@pytest.mark.parametrize("keyword", ["error", "ERROR", "orders", "ΚΑΦΈΣ", "=", "x"])
@pytest.mark.parametrize("ignore_case", [False, True])
def test_keyword_is_a_substring_test(keyword: str, ignore_case: bool) -> None:
    f = compile_filter(keyword=keyword, ignore_case=ignore_case)
    if ignore_case:
        expected = [t for t in TEXTS if keyword.casefold() in t.casefold()]
    else:
        expected = [t for t in TEXTS if keyword in t]
    assert [t for t in TEXTS if f.match(t)] == expected


def test_keyword_and_regex_must_both_match() -> None:
    f = compile_filter(keyword="orders", regex=r"\b500\b")
    assert [t for t in TEXTS if f.match(t)] == ["POST /api/orders 500 1200ms"]


@pytest.mark.parametrize("bad", ["(unclosed", r"(a)\1", r"(?<=x)y", "*"])
def test_invalid_or_unsupported_patterns_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(FilterError, match="invalid regex"):
        compile_filter(regex=bad)


def test_catastrophic_backtracking_pattern_is_linear() -> None:
    # With Python's re this takes longer than the age of the universe.
    f = compile_filter(regex=r"^(a+)+$")
    assert f.match("a" * 100_000 + "!") is False
    assert f.match("a" * 100_000) is True


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet="ab.*+?|()[]^$\\d", min_size=1, max_size=8),
    st.lists(st.text(alphabet="ab1 .", max_size=12), max_size=8),
)
def test_any_pattern_both_engines_accept_selects_the_same(pattern: str, texts: list[str]) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            py = re.compile(pattern)
    except re.error:
        return
    try:
        f = compile_filter(regex=pattern)
    except FilterError:
        return
    assert [t for t in texts if f.match(t)] == [t for t in texts if py.search(t)]
