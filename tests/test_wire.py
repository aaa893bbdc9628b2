"""The wire contract in code: names, the envelope and the atomic publish step."""

from __future__ import annotations

import json

import pytest
import redis

from wire import Checkpoint, Keys, Line, Publisher, StreamBatch, encode_line, parse_stream
from wire.envelope import clean_text, frame_ids, parse_id
from wire.names import StreamNameError

GOOD = [
    "kafka:payments",
    "kafka:a.b_c-D9",
    "kafka:" + "x" * 249,
    "kafka:app/web-1",
    "kafka:app/host name with spaces",
    "kafka:app/a/b",
    "file:web-01:/var/log/nginx/access.log",
    "file:m.example.com:/var/log/syslog",
]
BAD = [
    "",
    "payments",
    "kafka:",
    "kafka:bad topic",
    "kafka:" + "x" * 250,
    "kafka:app/",
    "kafka:app//lead-slash",
    "kafka:app/ctl\x07",
    "kafka:app/" + "s" * 201,
    "kafka:to;pic",
    "file:web-01:relative/path",
    "file:web-01:/var/log/../etc/shadow",
    "file:web-01:/var/log/./x",
    "file:web-01:/var//log",
    "file:web-01:/var/log/x\x00",
    "file:web-01:/var/log/x\nInjected",
    "file:web 01:/var/log/x",
    "file:web;rm:/var/log/x",
    "file:web-01",
    "file::/var/log/x",
    "file:web-01:/" + "a" * 4100,
    "s3:bucket",
]


@pytest.mark.parametrize("name", GOOD)
def test_valid_names_parse(name: str) -> None:
    assert parse_stream(name).name == name


@pytest.mark.parametrize("name", BAD)
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(StreamNameError):
        parse_stream(name)


def test_name_parts() -> None:
    s = parse_stream("kafka:app/web-1")
    assert (s.kind, s.topic, s.sub) == ("kafka", "app", "web-1")
    f = parse_stream("file:web-01:/var/log/a.log")
    assert (f.kind, f.minion, f.path) == ("file", "web-01", "/var/log/a.log")


def test_clean_text_replaces_bad_utf8_and_marks_truncation() -> None:
    assert clean_text(b"caf\xe9 ok") == "caf\ufffd ok"
    cut = clean_text(b"x" * 100, max_bytes=10)
    assert cut.startswith("x" * 10) and "truncated 90 bytes" in cut


def test_parse_id_rejects_garbage() -> None:
    assert parse_id("1700-3") == (1700, 3)
    for bad in ["", "abc", "1-", "-1", "1-2-3", "１-1", "1 -1"]:
        with pytest.raises(ValueError):
            parse_id(bad)


def _publisher(rclient: redis.Redis, prefix: str) -> Publisher:
    return Publisher(rclient, Keys(prefix), maxlen=1000)


def test_publish_appends_history_and_publishes_in_one_step(rclient: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    pubsub = rclient.pubsub()
    pubsub.subscribe(keys.live("kafka:t"))
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    pub = _publisher(rclient, prefix)
    lines = [encode_line(Line(1.5 + i, f"line {i}", {"n": i} if i == 2 else None)) for i in range(3)]
    assert pub.publish([StreamBatch("kafka:t", [(0, f) for f in lines])]) == (3, 0)
    msg = pubsub.get_message(timeout=2)
    first, last, count, array = frame_ids(msg["data"])
    published = json.loads(array)
    assert count == 3 and [p["text"] for p in published] == ["line 0", "line 1", "line 2"]
    assert published[2]["meta"] == {"n": 2} and published[0]["ts"] == 1.5
    assert parse_id(published[0]["id"]) == first and parse_id(published[-1]["id"]) == last
    ids = [parse_id(p["id"]) for p in published]
    assert ids == sorted(ids) and len(set(ids)) == 3
    hist = rclient.xrange(keys.hist("kafka:t"))
    assert [parse_id(i) for i, _ in hist] == ids
    pubsub.close()


def test_checkpoint_skips_offsets_already_published(rclient: redis.Redis, prefix: str) -> None:
    pub = _publisher(rclient, prefix)
    cp = Checkpoint("g", "t", 0)
    frag = encode_line(Line(1.0, "x"))
    assert pub.publish([StreamBatch("kafka:t", [(0, frag), (1, frag), (1, frag)])], cp) == (3, 0)
    # a redelivery of offsets 0..2: only 2 is new
    assert pub.publish([StreamBatch("kafka:t", [(0, frag), (1, frag), (2, frag)])], cp) == (1, 2)
    assert pub.offsets("g") == {"t:0": 2}
    assert rclient.xlen(Keys(prefix).hist("kafka:t")) == 4


def test_history_is_capped(rclient: redis.Redis, prefix: str) -> None:
    pub = Publisher(rclient, Keys(prefix), maxlen=100)
    frag = encode_line(Line(1.0, "x"))
    for _ in range(20):
        pub.publish([StreamBatch("kafka:cap", [(0, frag)] * 50)])
    assert rclient.xlen(Keys(prefix).hist("kafka:cap")) < 300


# --- added with the bridge (issue 3): the batch encoder and the checkpoint reset ---------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from wire.envelope import encode_lines  # noqa: E402

_meta = st.none() | st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8) | st.none(), max_size=4)


@given(
    ts=st.floats(min_value=0, max_value=4e9) | st.integers(min_value=0, max_value=4_000_000_000),
    texts=st.lists(st.text(max_size=40), max_size=5),
    meta=_meta,
)
def test_encode_lines_is_byte_for_byte_encode_line(ts: float, texts: list[str], meta: dict | None) -> None:
    assert encode_lines(ts, texts, meta) == [encode_line(Line(ts, text, meta)) for text in texts]


def test_reset_offset_lets_a_restarted_log_publish_again(rclient: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    pub = Publisher(rclient, keys)
    cp = Checkpoint("g", "t", 0)
    line = encode_line(Line(1.0, "x"))
    assert pub.publish([StreamBatch("kafka:t", [(5, line)])], cp) == (1, 0)
    assert pub.publish([StreamBatch("kafka:t", [(0, line)])], cp) == (0, 1)  # looks old: skipped
    pub.reset_offset(cp, -1)
    assert pub.offsets("g") == {}
    assert pub.publish([StreamBatch("kafka:t", [(0, line)])], cp) == (1, 0)
    pub.reset_offset(cp, 3)
    assert pub.offsets("g") == {"t:0": 3}
