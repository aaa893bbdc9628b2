"""Server-side filters select exactly what Python's `re` selects, and never hang."""

from __future__ import annotations

import re
import warnings
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.fanout.filters import FilterError, LineFilter, compile_filter

pytestmark = pytest.mark.unit


def sees(f: LineFilter, text: str, meta: dict[str, Any] | None = None) -> bool:
    """Whether filter `f` lets a line with `text` (and `meta`) through."""
    assert f.match is not None
    return f.match({"text": text, "meta": meta} if meta is not None else {"text": text})


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
    assert [t for t in TEXTS if sees(f, t)] == [t for t in TEXTS if py.search(t)]


@pytest.mark.parametrize("keyword", ["error", "ERROR", "orders", "ΚΑΦΈΣ", "=", "x"])
@pytest.mark.parametrize("ignore_case", [False, True])
def test_keyword_is_a_substring_test(keyword: str, ignore_case: bool) -> None:
    f = compile_filter(keyword=keyword, ignore_case=ignore_case)
    if ignore_case:
        expected = [t for t in TEXTS if keyword.casefold() in t.casefold()]
    else:
        expected = [t for t in TEXTS if keyword in t]
    assert [t for t in TEXTS if sees(f, t)] == expected


def test_keyword_and_regex_must_both_match() -> None:
    f = compile_filter(keyword="orders", regex=r"\b500\b")
    assert [t for t in TEXTS if sees(f, t)] == ["POST /api/orders 500 1200ms"]


@pytest.mark.parametrize("bad", ["(unclosed", r"(a)\1", r"(?<=x)y", "*"])
def test_invalid_or_unsupported_patterns_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(FilterError, match="invalid regex"):
        compile_filter(regex=bad)


def test_catastrophic_backtracking_pattern_is_linear() -> None:
    # With Python's re this takes longer than the age of the universe.
    f = compile_filter(regex=r"^(a+)+$")
    assert sees(f, "a" * 100_000 + "!") is False
    assert sees(f, "a" * 100_000) is True


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
    assert [t for t in texts if sees(f, t)] == [t for t in texts if py.search(t)]


def test_every_keyword_term_must_be_in_the_text_and_no_excluded_term() -> None:
    f = compile_filter(["orders", "POST"], exclude=["1200ms"])
    assert [t for t in TEXTS if sees(f, t)] == []
    f = compile_filter(["orders", "api"], exclude=["500"])
    assert [t for t in TEXTS if sees(f, t)] == ["GET /api/orders 200 12ms"]
    f = compile_filter(exclude=["error", "ERROR"])
    assert "ERROR payment declined" not in [t for t in TEXTS if sees(f, t)]
    folded = compile_filter(exclude=["error"], ignore_case=True)
    assert [t for t in TEXTS if sees(folded, t)] == [t for t in TEXTS if "error" not in t.lower()]


def test_fields_compare_meta_values_by_their_text_and_dots_reach_inside() -> None:
    meta = {"level": "ERROR", "http": {"status": 500, "ok": False}, "service": "checkout", "meta": {"x": "1"}}
    assert sees(compile_filter(fields={"level": "ERROR"}), "t", meta)
    assert not sees(compile_filter(fields={"level": "error"}), "t", meta)
    assert sees(compile_filter(fields={"level": "error"}, ignore_case=True), "t", meta)
    assert sees(compile_filter(fields={"http.status": "500", "http.ok": "false"}), "t", meta)
    assert sees(compile_filter(fields={"meta.service": "checkout"}), "t", meta), "a leading meta. names meta itself"
    assert sees(compile_filter(fields={"meta.meta.x": "1"}), "t", meta)
    assert not sees(compile_filter(fields={"http": "500"}), "t", meta), "an object equals no text"
    assert not sees(compile_filter(fields={"http.status.code": "500"}), "t", meta)
    assert not sees(compile_filter(fields={"level": "ERROR"}), "t"), "a line without meta has no field"
    both = compile_filter("declined", fields={"service": "checkout"}, exclude=["retry"])
    assert sees(both, "payment declined", meta) and not sees(both, "payment declined, retry", meta)
    assert not sees(both, "payment declined", {"service": "cart"})


def test_the_same_filter_written_in_another_order_has_one_key() -> None:
    a = compile_filter(["b", "a", "a"], exclude=["y", "x"], fields={"k": "1", "j": "2"})
    b = compile_filter(["a", "b"], exclude=["x", "y"], fields=[("j", "2"), ("k", "1")])
    assert a.key == b.key
    assert compile_filter("a").key != compile_filter(exclude=["a"]).key
    assert compile_filter(fields={"a": "b"}).key != compile_filter(fields={"a.b": ""}).key
    assert compile_filter("", exclude=[""]).passes_all
