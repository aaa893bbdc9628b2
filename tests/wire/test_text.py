"""The canonical text rule (wire/text.py) and the envelope's encoders and readers that
apply it: lone surrogates become U+FFFD, NaN and the infinities become strings, every
JSON written is strict, and what an older version stored reads back canonical."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support import strict_loads
from wire import Line, encode_line
from wire.envelope import (
    UNREADABLE_META,
    clean_text,
    encode_lines,
    encode_text,
    line_object,
    may_break_rule,
    read_line,
    read_lines,
)
from wire.names import StreamNameError, parse_stream
from wire.text import MAX_DEPTH, canonical, canonical_str, dumpb, has_lone_surrogate, nested_deeper

pytestmark = pytest.mark.unit

texts = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=12)  # lone surrogates too
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,  # NaN and the infinities too
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


def _old_encoding(value: Any) -> bytes:
    """What a version before the rule wrote: json.dumps, then 'backslashreplace'."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "backslashreplace")


@pytest.mark.parametrize(
    ("text", "canonical_form"),
    [
        ("x \ud800", "x \ufffd"),
        ("\udc00 low first", "\ufffd low first"),
        ("\ud800\ud800", "\ufffd\ufffd"),
        ("\udfff\ud800", "\ufffd\ufffd"),
        ("pair as two \ud83d\ude00", "pair as two \U0001f600"),
        ("ends high \udbff", "ends high \ufffd"),
    ],
)
def test_lone_surrogates_become_replacement_characters(text: str, canonical_form: str) -> None:
    assert has_lone_surrogate(text)
    assert canonical_str(text) == canonical_form
    assert not has_lone_surrogate(canonical_form)


def test_canonical_text_is_returned_as_is() -> None:
    for text in ("ascii", "é ü 日本 \U0001f600 \ufffd", ""):
        assert not has_lone_surrogate(text)
        assert canonical_str(text) is text


def test_numbers_json_cannot_hold_become_strings_and_the_rest_is_kept() -> None:
    nan, inf = float("nan"), float("inf")
    value = {"a": nan, "b": [inf, -inf, 1.5, -0.0, 10**40], "c\ud800": {"d": "\udc00"}, "e": None, "f": True}
    assert canonical(value) == {
        "a": "NaN",
        "b": ["Infinity", "-Infinity", 1.5, -0.0, 10**40],
        "c\ufffd": {"d": "\ufffd"},
        "e": None,
        "f": True,
    }
    assert dumpb(value) == json.dumps(canonical(value), ensure_ascii=False, separators=(",", ":")).encode()


@given(value=values)
def test_dumpb_is_always_strict_and_canonical(value: Any) -> None:
    data = dumpb(value)
    parsed = strict_loads(data)
    assert parsed == canonical(value)
    assert canonical(parsed) == parsed  # canonical already: the rule changes nothing more
    assert dumpb(parsed) == data


@given(
    ts=st.floats(0, 4e9),
    lines=st.lists(texts, min_size=1, max_size=4),
    meta=st.none() | st.dictionaries(texts, values, max_size=3),
)
def test_every_encoder_writes_canonical_fragments_byte_for_byte_alike(ts: float, lines: list[str], meta: Any) -> None:
    fragments = encode_lines(ts, lines, meta)
    assert fragments == [encode_line(Line(ts, text, meta)) for text in lines]
    if not meta:
        assert fragments == [encode_text(ts, text) for text in lines]
    for text, fragment in zip(lines, fragments, strict=True):
        line = strict_loads(b"{" + fragment + b"}")
        assert line["text"] == canonical_str(text)
        assert line.get("meta") == (canonical(meta) if meta else None)


def test_clean_text_of_a_string_replaces_lone_surrogates_as_the_rule_says() -> None:
    assert clean_text("a \ud800 b") == "a \ufffd b"


@given(value=values)
def test_what_an_old_version_stored_is_always_suspected_when_it_breaks_the_rule(value: Any) -> None:
    old = _old_encoding(value)
    try:
        fine = strict_loads(old) == value
    except ValueError:
        fine = False
    assert fine or may_break_rule(old)


@given(lines=st.lists(st.tuples(texts, st.none() | st.dictionaries(texts, values, max_size=2)), min_size=1, max_size=4))
def test_a_live_array_an_old_version_wrote_reads_back_canonical(lines: list[tuple[str, Any]]) -> None:
    objects = [
        {"id": f"{i + 1}-0", "ts": 1.5, "text": text, **({"meta": meta} if meta else {})}
        for i, (text, meta) in enumerate(lines)
    ]
    got, rewritten, unreadable = read_lines(_old_encoding(objects))
    assert got == canonical(objects) and unreadable == 0
    assert rewritten == sum(1 for obj in objects if not _strict(_old_encoding(obj)))
    assert strict_loads(dumpb(got)) == got


def _strict(data: bytes) -> bool:
    try:
        strict_loads(data)
    except ValueError:
        return False
    return True


def test_unreadable_lines_become_notices_under_their_ids() -> None:
    deep = b"[" * 5000 + b"]" * 5000
    good = line_object(b"1-0", b'"ts":1.0,"text":"fine \\ud800","meta":{"v":NaN}')
    array = (
        b"["
        + b",".join([good, b'{"id":"2-5","ts":1.0,"text":"d","meta":' + deep + b"}", b'{"id":"3-0","ts":1,"te'])
        + b"]"
    )
    lines, rewritten, unreadable = read_lines(array)
    assert (rewritten, unreadable) == (1, 2)
    assert lines[0] == {"id": "1-0", "ts": 1.0, "text": "fine \ufffd", "meta": {"v": "NaN"}}
    assert [(line["id"], line["ts"], line["meta"]) for line in lines[1:]] == [
        ("2-5", 0.002, UNREADABLE_META),
        ("3-0", 0.003, UNREADABLE_META),
    ]
    assert "nested too deeply" in lines[1]["text"] and "not JSON" in lines[2]["text"]
    for line_id, fragment, how in [
        (b"7-1", b'"ts":1.0,"text":"x"', ""),
        (b"7-2", b'"ts":1.0,"text":"\\udfff"', "rewritten"),
        (b"7-3", None, "unreadable"),
        (b"7-4", b'"ts":1.0,"text":5', "unreadable"),  # not a line: its text is no string
        (b"7-5", b'"ts":1.0,"text":"x","meta":' + deep, "unreadable"),
    ]:
        line, did = read_line(line_id, fragment)
        assert did == how and line["id"] == line_id.decode()
        strict_loads(dumpb(line))


def test_nesting_is_bounded_exactly_at_max_depth() -> None:
    for depth, deeper in ((0, False), (1, False), (MAX_DEPTH, False), (MAX_DEPTH + 1, True), (500, True)):
        raw = "[" * depth + "]" * depth or "1"
        assert nested_deeper(raw.encode(), json.loads(raw)) is deeper
    wide = {"a": [[{}] * 3] * 40, "b": "[" * 200}  # many brackets, little depth: walked, and not deeper
    assert not nested_deeper(json.dumps(wide), wide)


@pytest.mark.parametrize("name", ["kafka:t/\ud800", "file:m:/var/log/\udcff.log", "kafka:\udfff"])
def test_a_stream_name_with_a_lone_surrogate_is_refused(name: str) -> None:
    with pytest.raises(StreamNameError, match="lone surrogate"):
        parse_stream(name)
