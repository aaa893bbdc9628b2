"""Decoding and routing rules of the bridge, one rule per test (pure functions)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bridge.decode import Decoder
from bridge.route import Route, Router
from settings.model import BridgeSettings, RouteSettings
from tests.support import ROOT, service_env
from wire.envelope import TRUNCATION_MARKER


def decode(value: bytes | None, fmt: str = "auto", field: str = "message", max_bytes: int = 1024):
    errors: Counter[str] = Counter()
    lines, meta = Decoder(fmt, field, max_bytes).decode(value, errors)
    return lines, meta, dict(errors)


@pytest.mark.unit
def test_plain_line_and_crlf() -> None:
    assert decode(b"GET / 200") == (["GET / 200"], None, {})
    assert decode(b"GET / 200\r\n") == (["GET / 200"], None, {})


@pytest.mark.unit
def test_chunk_is_split_on_newlines_keeping_blank_lines_inside() -> None:
    assert decode(b"a\nb\r\n\nc\n") == (["a", "b", "", "c"], None, {})


@pytest.mark.unit
def test_json_text_field_and_meta() -> None:
    value = json.dumps({"message": "order placed\n", "level": "INFO", "n": 3}).encode()
    assert decode(value, "json") == (["order placed"], {"level": "INFO", "n": 3}, {})
    assert decode(value, "auto") == (["order placed"], {"level": "INFO", "n": 3}, {})


@pytest.mark.unit
def test_json_string_nested_in_the_text_field_is_opened() -> None:
    inner = json.dumps({"log": "payment declined", "service": "pay", "level": "WARN"})
    value = json.dumps({"log": inner, "pod": "pay-1"}).encode()
    lines, meta, errors = decode(value, "json", "log")
    assert lines == ["payment declined"]
    assert meta == {"pod": "pay-1", "service": "pay", "level": "WARN"}
    assert errors == {}


@pytest.mark.unit
def test_nested_string_that_is_not_an_object_stays_text() -> None:
    value = json.dumps({"log": "{not json at all", "pod": "p"}).encode()
    assert decode(value, "json", "log") == (["{not json at all"], {"pod": "p"}, {})


@pytest.mark.unit
def test_non_string_text_is_shown_as_json() -> None:
    assert decode(b'{"message": {"a": 1}}', "json")[0] == ['{"a":1}']
    assert decode(b'{"message": 42}', "json")[0] == ["42"]


@pytest.mark.unit
def test_bad_utf8_becomes_replacement_characters() -> None:
    assert decode(b"caf\xe9 \xff") == (["caf\ufffd \ufffd"], None, {"bad_utf8": 1})
    lines, meta, errors = decode(b'{"message": "caf\xe9", "x": 1}', "json")
    assert lines == ["caf\ufffd"] and meta == {"x": 1} and errors == {"bad_utf8": 1}


@pytest.mark.unit
def test_long_line_is_truncated_with_a_visible_marker() -> None:
    lines, _, errors = decode(b"x" * 5000 + b"\nshort", max_bytes=1024)
    assert lines[0] == "x" * 1024 + TRUNCATION_MARKER.format(n=5000 - 1024)
    assert lines[1] == "short"
    assert errors == {"truncated": 1}


@pytest.mark.unit
def test_truncation_never_splits_a_character() -> None:
    lines, _, _ = decode(("é" * 1000).encode(), max_bytes=1023)
    assert lines[0].startswith("é" * 511 + " …[truncated")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("value", "kind"),
    [(None, "tombstone"), (b"", "empty")],
)
def test_tombstone_and_empty_give_no_line_and_are_counted(value: bytes | None, kind: str) -> None:
    assert decode(value) == ([], None, {kind: 1})


@pytest.mark.unit
@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (b'{"message": "unterminated', "invalid_json"),
        (b"[1, 2, 3]", "not_object"),
        (b'{"msg": "other field"}', "missing_field"),
        (b'{"message": null}', "missing_field"),
    ],
)
def test_json_format_publishes_malformed_values_raw_and_counts_them(value: bytes, kind: str) -> None:
    assert decode(value, "json") == ([value.decode()], None, {kind: 1})


@pytest.mark.unit
def test_auto_format_takes_non_matching_json_as_plain_text_without_error() -> None:
    assert decode(b'{"unrelated": 1}') == (['{"unrelated": 1}'], None, {})
    assert decode(b"{broken") == (["{broken"], None, {})


@pytest.mark.unit
def test_json_string_value_is_its_text() -> None:
    assert decode(b'"just a string\\n"', "json") == (["just a string"], None, {})


@pytest.mark.unit
def test_text_format_never_parses_json() -> None:
    assert decode(b'{"message": "x"}', "text") == (['{"message": "x"}'], None, {})


def route(**rule: object) -> Route:
    return Route("app", RouteSettings(topic="app", **rule), 1024)  # type: ignore[arg-type]


@pytest.mark.unit
def test_split_by_key_keeping_whole() -> None:
    errors: Counter[str] = Counter()
    assert route(split_by="key").streams(b"web-1", None, errors) == ("kafka:app", "kafka:app/web-1")
    assert route(split_by="key", keep_whole=False).streams(b"web-1", None, errors) == ("kafka:app/web-1",)
    assert not errors


@pytest.mark.unit
def test_split_by_field_with_dotted_path() -> None:
    errors: Counter[str] = Counter()
    r = route(split_by="field", field="k8s.pod", keep_whole=False)
    assert r.streams(b"", {"k8s": {"pod": "api-7"}}, errors) == ("kafka:app/api-7",)
    assert route(split_by="field", field="port").streams(None, {"port": 8080}, errors)[1] == "kafka:app/8080"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("key", "meta", "kind"),
    [
        (None, None, "no_sub"),
        (b"ctl\x07char", None, "bad_sub"),
        (b"/leading-slash", None, "bad_sub"),
        (b"s" * 201, None, "bad_sub"),
    ],
)
def test_unusable_key_goes_to_the_whole_stream_and_is_counted(key: bytes | None, meta: object, kind: str) -> None:
    errors: Counter[str] = Counter()
    r = route(split_by="key", keep_whole=False)
    assert r.streams(key, None, errors) == ("kafka:app",)
    assert errors == {kind: 1}


@pytest.mark.unit
@pytest.mark.parametrize("meta", [None, {}, {"service": None}, {"service": {"a": 1}}, {"service": True}])
def test_unusable_field_goes_to_the_whole_stream(meta: dict | None) -> None:
    errors: Counter[str] = Counter()
    assert route(split_by="field", field="service", keep_whole=False).streams(None, meta, errors) == ("kafka:app",)
    assert errors == {"no_sub": 1}


@pytest.mark.unit
def test_too_many_subs_overflow_to_the_whole_stream() -> None:
    errors: Counter[str] = Counter()
    r = route(split_by="key", keep_whole=False, max_subs=2)
    assert [r.streams(k, None, errors) for k in (b"a", b"b", b"c", b"a")] == [
        ("kafka:app/a",),
        ("kafka:app/b",),
        ("kafka:app",),
        ("kafka:app/a",),
    ]
    assert errors == {"too_many_subs": 1}


@pytest.mark.unit
def test_router_prefers_a_named_rule_then_the_first_matching_pattern() -> None:
    settings = BridgeSettings(
        routes=[
            RouteSettings(pattern="app-.*", format="json"),
            RouteSettings(topic="app-web", format="text"),
            RouteSettings(pattern=".*", split_by="key"),
        ]
    )
    router = Router(settings)
    assert router.route("app-web").decoder.format == "text"
    assert router.route("app-db").decoder.format == "json"
    assert router.route("other").split_by == "key"
    assert router.route("app-db-x").decoder.format == "json"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("{topic: a, pattern: b}", "exactly one of topic or pattern"),
        ("{pattern: '(unclosed'}", "not a valid regular expression"),
        ("{topic: 'bad topic'}", "topic must match"),
        ("{topic: a, split_by: host}", "split_by"),
        ("{topic: a, split_by: field}", "field: required"),
        ("{topic: a, format: xml}", "format must be one of"),
    ],
)
def test_bad_route_config_fails_the_start_with_a_clear_error(tmp_path: Path, rule: str, message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(f"bridge:\n  routes:\n    - {rule}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "--config", str(config)],
        cwd=ROOT,
        env=service_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "configuration error" in proc.stderr and message in proc.stderr


# --- the hot path's shortcut for plain one-line values (issue 3, performance) --------------

from collections import namedtuple  # noqa: E402
from itertools import pairwise  # noqa: E402

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bridge.batch import Work, add_partition  # noqa: E402
from wire import Line, encode_line  # noqa: E402

_values = st.one_of(
    st.binary(max_size=40),
    st.text(alphabet=st.sampled_from(["a", "é", "{", "}", " ", "\t", "\r", "\n", '"', ":", "x"]), max_size=40).map(
        str.encode
    ),
    st.sampled_from([b'{"message":"hi","level":"W"}', b' {"message":"x"}', b"\xff\xfe", b"a\r", b"x" * 300]),
)


@pytest.mark.unit
@given(value=st.none() | _values, fmt=st.sampled_from(["auto", "text", "json"]))
def test_the_plain_line_shortcut_agrees_with_decode(value: bytes | None, fmt: str) -> None:
    decoder = Decoder(fmt, "message", 256)
    text = decoder.plain_line(value)
    if text is not None:  # taken only where decode gives exactly that one line, no rule applied
        assert decode(value, fmt, max_bytes=256) == ([text], None, {})


@pytest.mark.unit
def test_the_plain_line_shortcut_takes_the_common_line() -> None:
    assert Decoder("auto").plain_line(b"GET /api 200 rt=0.012") == "GET /api 200 rt=0.012"
    assert Decoder("text").plain_line(b'{"message": "x"}') == '{"message": "x"}'
    for value in [b'{"message": "x"}', b"a\nb", b"a\r", b"\xff", b"", None, b"x" * 2000]:
        assert Decoder("auto", max_bytes=1024).plain_line(value) is None


Rec = namedtuple("Rec", "offset timestamp key value")

MIXED = [
    b"plain one",
    b"chunk a\nchunk b\n",
    b'{"message": "from json", "host": "h1"}',
    None,
    b"",
    b"bad \xff utf8",
    b"crlf line\r\n",
    b"x" * 400,
    b"plain two",
    b"  {not json",
]


@pytest.mark.unit
@pytest.mark.parametrize("split_by", ["", "key"])
@pytest.mark.parametrize("max_lines", [1, 3, 5000])
def test_batches_hold_every_line_encoded_as_encode_line_would(split_by: str, max_lines: int) -> None:
    r = Route("app", RouteSettings(topic="app", split_by=split_by), 256)
    records = [Rec(100 + i, 1_700_000_000_000 + i, b"web-1" if i % 2 else None, v) for i, v in enumerate(MIXED)]
    work = Work()
    add_partition(work, r, "g", "app", 2, records, max_lines)
    expected: dict[str, list[tuple[int, bytes]]] = {}
    errors: Counter[str] = Counter()
    for rec in records:
        lines, meta = r.decoder.decode(rec.value, errors)
        for stream in r.streams(rec.key, meta, errors) if lines else ():
            ts = rec.timestamp / 1000.0
            expected.setdefault(stream, []).extend((rec.offset, encode_line(Line(ts, t, meta))) for t in lines)
    got: dict[str, list[tuple[int, bytes]]] = {}
    for batches, checkpoint in work.calls:
        assert (checkpoint.topic, checkpoint.partition) == ("app", 2)
        for batch in batches:
            got.setdefault(batch.stream, []).extend(batch.lines)
    assert got == expected
    assert work.errors == errors and work.lines_in["app"] == 9 and work.messages_in["app"] == len(MIXED)
    # a call is closed at a message boundary once it holds max_lines lines
    offsets = [{seq for b in batches for seq, _ in b.lines} for batches, _ in work.calls]
    assert all(not (a & b) for a, b in pairwise(offsets))
    if max_lines == 5000:
        assert len(work.calls) == 1


_lines = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=30).map(str.encode),  # ASCII, escapes included
    _values,
)


@pytest.mark.unit
@given(
    values=st.lists(_lines, min_size=1, max_size=12),
    stamps=st.lists(st.integers(0, 2_000_000_000_000), min_size=1, max_size=3),
    fmt=st.sampled_from(["auto", "text", "json"]),
)
def test_every_value_is_encoded_as_encode_line_would_whichever_path_it_takes(
    values: list[bytes], stamps: list[int], fmt: str
) -> None:
    r = Route("app", RouteSettings(topic="app", format=fmt), 256)
    records = [Rec(i, stamps[i % len(stamps)], None, v) for i, v in enumerate(values)]
    work = Work()
    add_partition(work, r, "g", "app", 0, records, 5000)
    expected = []
    for rec in records:
        lines, meta = r.decoder.decode(rec.value, Counter())
        expected += [(rec.offset, encode_line(Line(rec.timestamp / 1000.0, t, meta))) for t in lines]
    got = [line for batches, _ in work.calls for b in batches for line in b.lines]
    assert got == expected
