"""One pass over a line for all of a stream's filters gives exactly each filter's own verdict,
and a batch's lines split into their own bytes are the lines the array holds."""

from __future__ import annotations

import json
from typing import Any

import pytest
import re2
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.fanout.filters import FilterError, LineFilter, compile_filter
from gateway.fanout.onepass import Atom, FilterSet, Plan, plan_of
from wire.envelope import split_lines
from wire.text import dumpb

pytestmark = pytest.mark.unit

# letters whose case folding is not one-to-one: ß/SS, the Kelvin sign, dotted and dotless i,
# final sigma, a decomposed é; and the characters regexes and JSON treat specially
ALPHABET = 'aAbBsSßẞKkKİiıIΣσςéÉe\u0301 0129.-_\t"\\/{}[]:,☕𝄞'
texts = st.text(alphabet=ALPHABET, max_size=24)
keywords = st.text(alphabet=ALPHABET, max_size=3)
PIECES = st.sampled_from(
    ["a", "S", "ß", "k", "K", "i", "ı", "σ", "é", r"\d", r"\s", r"\w", ".", "[a-c]", "[^s]", r"\b", "^", "$", "(?i)s"]
)
QUANTIFIERS = st.sampled_from(["", "", "*", "+", "?", "{2}"])


@st.composite
def regexes(draw: st.DrawFn) -> str:
    branches = draw(st.lists(st.lists(st.tuples(PIECES, QUANTIFIERS), max_size=4), min_size=1, max_size=3))
    return "|".join("".join(piece + q for piece, q in branch) for branch in branches)


LEVELS = st.sampled_from(["error", "ERROR", "warn", "ß", "SS"])


@st.composite
def line_filters(draw: st.DrawFn) -> LineFilter:
    terms = draw(st.lists(keywords, max_size=3))
    regex = draw(st.one_of(st.just(""), regexes()))
    exclude = draw(st.lists(keywords, max_size=2))
    fields = draw(st.dictionaries(st.sampled_from(["level", "http.status"]), LEVELS, max_size=2))
    try:
        line_filter = compile_filter(terms, regex, draw(st.booleans()), exclude, fields)
    except FilterError:
        assume(False)
    assume(not line_filter.passes_all)
    return line_filter


@st.composite
def lines_of(draw: st.DrawFn) -> list[dict[str, Any]]:
    items = draw(st.lists(st.tuples(texts, st.none() | LEVELS, st.none() | st.sampled_from([500, "500"])), max_size=12))
    lines: list[dict[str, Any]] = []
    for i, (text, level, status) in enumerate(items):
        meta = {k: v for k, v in (("level", level), ("http", {"status": status})) if v is not None}
        lines.append({"id": f"1-{i}", "text": text, **({"meta": meta} if meta else {})})
    return lines


def per_filter(filters: list[LineFilter], lines: list[dict[str, Any]]) -> list[list[int]]:
    """What each filter keeps on its own: the verdicts one pass must reproduce."""
    return [[i for i, line in enumerate(lines) if f.match(line)] for f in filters]  # type: ignore[misc]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.lists(line_filters(), min_size=1, max_size=12), lines_of())
def test_one_pass_gives_each_filters_own_verdicts(filters: list[LineFilter], lines: list[dict[str, Any]]) -> None:
    """Keyword terms, regexes, excluded terms and fields, in both case modes."""
    assert FilterSet([plan_of(f) for f in filters]).select(lines) == per_filter(filters, lines)


def test_case_folding_and_unicode_as_the_filters_fold() -> None:
    filters = [
        compile_filter("STRASSE", ignore_case=True),  # casefold: "straße" folds to "strasse"
        compile_filter("straße", ignore_case=True),  # the same folded word: both hit
        compile_filter("Straße"),  # exact
        compile_filter("k", ignore_case=True),  # the Kelvin sign folds to k
        compile_filter(regex="σ+", ignore_case=True),  # RE2's own folding: Σ, σ and ς
        compile_filter(regex="^é"),  # one code point, not e + combining accent
        compile_filter("☕", regex="𝄞$"),  # both parts must hit
    ]
    texts = ["Straße", "STRASSE", "strasse", "\u212a", "ΣΑΣ", "ς", "é", "e\u0301", "☕ 𝄞", "☕ 𝄞 ", "𝄞"]
    lines = [{"id": f"1-{i}", "text": t} for i, t in enumerate(texts)]
    expected = per_filter(filters, lines)
    assert expected[0] == expected[1] == [0, 1, 2]
    assert expected[3] == [3] and expected[4] == [4, 5] and expected[5] == [6] and expected[6] == [8]
    assert FilterSet([plan_of(f) for f in filters]).select(lines) == expected


ATOMS = st.one_of(
    st.tuples(st.just("keyword"), keywords.filter(bool), st.booleans()),
    st.tuples(st.just("regex"), regexes(), st.booleans()),
)


def holds(atom: Atom, text: str) -> bool:
    kind, term, fold = atom
    if kind == "keyword":
        return term.casefold() in text.casefold() if fold else term in text
    options = re2.Options()
    options.case_sensitive = not fold
    return re2.compile(term, options).search(text) is not None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.lists(ATOMS, max_size=3), st.lists(ATOMS, max_size=2), st.booleans()), max_size=8),
    st.lists(texts, max_size=10),
)
def test_vetoes_and_extra_predicates_combine_with_the_hits(
    specs: list[tuple[list[Atom], list[Atom], bool]], texts: list[str]
) -> None:
    """Plans in general: vetoes and a predicate combine with the hits as documented."""
    even = lambda line: int(line["id"][2:]) % 2 == 0  # noqa: E731
    plans = [Plan(tuple(need), tuple(veto), even if use_extra else None) for need, veto, use_extra in specs]
    lines = [{"id": f"1-{i}", "text": t} for i, t in enumerate(texts)]
    expected = [
        [
            i
            for i, line in enumerate(lines)
            if all(holds(a, line["text"]) for a in plan.need)
            and not any(holds(a, line["text"]) for a in plan.veto)
            and (plan.extra is None or plan.extra(line))
        ]
        for plan in plans
    ]
    assert FilterSet(plans).select(lines) == expected


def test_regexes_too_large_for_one_set_are_searched_one_by_one() -> None:
    filters = [compile_filter(regex=f"a[ab]{{{k}}}b") for k in range(5, 25)] + [compile_filter("ab")]
    texts = ["a" + "ab" * k + "b" for k in range(2, 14)] + ["zz", ""]
    lines = [{"id": f"1-{i}", "text": t} for i, t in enumerate(texts)]
    small = FilterSet([plan_of(f) for f in filters], max_mem=4096)  # too small for the set to compile
    assert small.select(lines) == per_filter(filters, lines)
    assert small.select(lines) == FilterSet([plan_of(f) for f in filters]).select(lines)


metas = st.recursive(
    st.none() | st.booleans() | st.integers() | texts,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["id", "text", "k"]), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(texts, metas), max_size=8), st.booleans())
def test_a_batch_splits_into_its_lines_own_bytes(items: list[tuple[str, Any]], spaced: bool) -> None:
    # a meta object that starts like a line object must not be taken for one
    lines = [{"id": f"17-{i}", "text": t, "meta": {"id": f"17-{i + 1}", "m": m}} for i, (t, m) in enumerate(items)]
    # as the publish step writes it, or as a foreign producer might (spaces, escaped non-ASCII)
    array = json.dumps(lines, indent=1).encode() if spaced else dumpb(lines)
    split = split_lines(array)
    assert split is not None
    parsed, encoded = split
    assert parsed == json.loads(array)
    assert [json.loads(part) for part in encoded] == lines
    if not spaced:
        assert b"[" + b",".join(encoded) + b"]" == array
    assert all(part in array for part in encoded)


@pytest.mark.parametrize(
    "array",
    [b"", b"{}", b"[1]", b'[{"id":"1-0"}]', b'[{"id":"1-0","text":"a"}', b'[{"id":"1-0","text":"a"}]]', b"[\xff]"],
)
def test_what_is_not_an_array_of_lines_is_not_split(array: bytes) -> None:
    assert split_lines(array) is None
