"""The wire contract in code: names, the envelope and the atomic publish step."""

from __future__ import annotations

import json

import pytest
import redis

from wire import Checkpoint, Keys, Line, Publisher, StreamBatch, encode_line, parse_stream
from wire.envelope import clean_text, frame_ids, parse_id
from wire.epoch import read_epoch
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


@pytest.mark.unit
@pytest.mark.parametrize("name", GOOD)
def test_valid_names_parse(name: str) -> None:
    assert parse_stream(name).name == name


@pytest.mark.unit
@pytest.mark.parametrize("name", BAD)
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(StreamNameError):
        parse_stream(name)


@pytest.mark.unit
def test_name_parts() -> None:
    s = parse_stream("kafka:app/web-1")
    assert (s.kind, s.topic, s.sub) == ("kafka", "app", "web-1")
    f = parse_stream("file:web-01:/var/log/a.log")
    assert (f.kind, f.minion, f.path) == ("file", "web-01", "/var/log/a.log")


@pytest.mark.unit
def test_clean_text_replaces_bad_utf8_and_marks_truncation() -> None:
    assert clean_text(b"caf\xe9 ok") == "caf\ufffd ok"
    cut = clean_text(b"x" * 100, max_bytes=10)
    assert cut.startswith("x" * 10) and "truncated 90 bytes" in cut


@pytest.mark.unit
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
    first, last, count, array, epoch = frame_ids(msg["data"])
    published = json.loads(array)
    assert count == 3 and [p["text"] for p in published] == ["line 0", "line 1", "line 2"]
    assert epoch is not None and epoch == read_epoch(rclient, keys, "kafka:t")
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


@pytest.mark.unit
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


# --- the publish step's packed arguments (issue 3, performance) ---------------------------
# A stream's fragments travel as one argument joined by newlines, and its seqs as one
# string, so the script must split them back exactly: these check what Redis ends up with.


def _live(rclient: redis.Redis, keys: Keys, streams: list[str]):
    pubsub = rclient.pubsub()
    pubsub.subscribe(*[keys.live(s) for s in streams])
    for _ in streams:
        assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    return pubsub


@pytest.mark.unit
@given(texts=st.lists(st.text(max_size=30), min_size=1, max_size=6), meta=_meta)
def test_a_fragment_never_holds_a_raw_newline(texts: list[str], meta: dict | None) -> None:
    texts = [t + "\n" + t for t in texts]  # newlines inside the text are kept, escaped
    for fragment in [*encode_lines(1.0, texts, meta), encode_line(Line(1.0, texts[0], meta))]:
        assert b"\n" not in fragment and b"\r" not in fragment


def test_a_fragment_with_a_raw_newline_is_refused_before_anything_is_sent(rclient: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    pub = _publisher(rclient, prefix)
    good = encode_line(Line(1.0, "fine"))
    with pytest.raises(ValueError, match="raw newline"):
        pub.publish([StreamBatch("kafka:a", [(0, good)]), StreamBatch("kafka:b", [(1, b'"text":"x\ny"')])])
    with pytest.raises(ValueError, match="raw newline"):
        pub.publish_many([([StreamBatch("kafka:b", [(0, good), (1, b'"ts":1\n')])], Checkpoint("g", "t", 0))])
    assert rclient.exists(keys.hist("kafka:a"), keys.hist("kafka:b")) == 0
    assert pub.offsets("g") == {}


def test_empty_batches_publish_nothing(rclient: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    pub = _publisher(rclient, prefix)
    assert pub.publish([]) == (0, 0)
    assert pub.publish([StreamBatch("kafka:e")], Checkpoint("g", "t", 0)) == (0, 0)
    assert pub.publish_many([]) == (0, 0)
    assert pub.publish_many([([StreamBatch("kafka:e")], Checkpoint("g", "t", 0))]) == (0, 0)
    line = encode_line(Line(1.0, "only"))
    # an empty stream among others is left out; the others are published
    assert pub.publish([StreamBatch("kafka:e"), StreamBatch("kafka:f", [(0, line)])]) == (1, 0)
    assert rclient.exists(keys.hist("kafka:e")) == 0 and pub.offsets("g") == {}


def test_many_streams_in_one_call_keep_every_line_in_order(rclient: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    streams = [f"kafka:app/s{i}" for i in range(40)]
    pubsub = _live(rclient, keys, streams)
    pub = _publisher(rclient, prefix)
    texts = {s: [f'{s} line {j} \u00e9 \\ "q"' for j in range(i % 7 + 1)] for i, s in enumerate(streams)}
    expected = {s: encode_lines(2.5, texts[s], {"k": "v\nw"} if i % 2 else None) for i, s in enumerate(streams)}
    batches = [StreamBatch(s, [(100 + j, f) for j, f in enumerate(expected[s])]) for s in streams]
    total = sum(len(v) for v in expected.values())
    assert pub.publish(batches, Checkpoint("g", "app", 0)) == (total, 0)
    for s in streams:
        hist = rclient.xrange(keys.hist(s))
        assert [fields[b"d"] for _, fields in hist] == expected[s]
        msg = pubsub.get_message(timeout=2)
        assert msg["channel"] == keys.live(s).encode()
        _, _, count, array, _ = frame_ids(msg["data"])
        ids = [i.decode() for i, _ in hist]
        # byte for byte what the gateway and console expect: header, then the line objects
        assert msg["data"] == (
            f"{ids[0]} {ids[-1]} {len(ids)} {read_epoch(rclient, keys, s)}\n[".encode()
            + b",".join(b'{"id":"' + i.encode() + b'",' + f + b"}" for i, f in zip(ids, expected[s], strict=True))
            + b"]"
        )
        assert count == len(expected[s]) and [o["text"] for o in json.loads(array)] == texts[s]
    assert pub.offsets("g") == {"app:0": max(100 + len(v) - 1 for v in expected.values())}
    counts = rclient.hgetall(keys.counts)
    assert {k.decode(): int(v) for k, v in counts.items()} == {s: len(expected[s]) for s in streams}
    assert {m.decode() for m in rclient.zrange(keys.seen, 0, -1)} == set(streams)
    pubsub.close()


@pytest.mark.parametrize(
    "first, again, published",
    [
        # one line per message (consecutive offsets), redelivered from the middle
        ([(o, o) for o in range(10)], [(o, o) for o in range(6, 14)], [10, 11, 12, 13]),
        # chunks: several lines share their message's offset
        (
            [(o, o * 10 + j) for o in range(3) for j in range(4)],
            [(o, o * 10 + j) for o in range(1, 5) for j in range(4)],
            [30, 31, 32, 33, 40, 41, 42, 43],
        ),
        # gaps (a compacted topic) and a single line
        ([(0, 0), (5, 5), (9, 9)], [(5, 5), (9, 9), (12, 12), (20, 20)], [12, 20]),
        ([(7, 7)], [(7, 7)], []),
        ([(7, 7)], [(8, 8)], [8]),
        # out of order seqs still compare one by one
        ([(5, 5)], [(6, 6), (2, 2), (9, 9), (5, 5)], [6, 9]),
    ],
)
def test_redelivered_offsets_are_skipped_line_by_line(
    rclient: redis.Redis, prefix: str, first: list, again: list, published: list
) -> None:
    keys = Keys(prefix)
    pub = _publisher(rclient, prefix)
    cp = Checkpoint("g", "t", 3)

    def batch(pairs: list) -> list[StreamBatch]:
        return [StreamBatch("kafka:t", [(seq, encode_line(Line(1.0, str(n)))) for seq, n in pairs])]

    assert pub.publish(batch(first), cp) == (len(first), 0)
    assert pub.publish_many([(batch(again), cp)]) == (len(published), len(again) - len(published))
    texts = [json.loads(b"{" + f[b"d"] + b"}")["text"] for _, f in rclient.xrange(keys.hist("kafka:t"))]
    assert texts == [str(n) for _, n in first] + [str(n) for n in published]
    assert pub.offsets("g") == {"t:3": max(seq for seq, _ in first + again)}


@pytest.mark.unit
@given(ts=st.floats(min_value=0, max_value=4e9) | st.integers(min_value=0, max_value=4_000_000_000), text=st.text())
def test_encode_text_is_byte_for_byte_encode_line(ts: float, text: str) -> None:
    from wire.envelope import encode_text

    assert encode_text(ts, text) == encode_line(Line(ts, text))


@pytest.mark.unit
def test_the_cached_timestamp_head_never_mixes_equal_numbers_written_differently() -> None:
    from wire.envelope import encode_text

    for before, ts in [(5.0, 5), (5, 5.0), (0.0, -0.0), (-0.0, 0.0), (0.0, 0), (0, 0.0)]:
        encode_text(before, "x")
        encode_lines(before, ["x"])
        assert encode_text(ts, "x") == encode_line(Line(ts, "x"))
        assert encode_lines(ts, ["x", "y"]) == [encode_line(Line(ts, "x")), encode_line(Line(ts, "y"))]


@pytest.mark.unit
@given(
    ts=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    text=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\')),
)
def test_a_verbatim_value_gives_the_fragment_encode_text_gives(ts: float, text: str) -> None:
    from wire.envelope import JSON_ESCAPED, encode_text, verbatim_prefix

    value = text.encode()
    assert value.isascii() and len(value.translate(None, JSON_ESCAPED)) == len(value)
    assert verbatim_prefix(ts) + value + b'"' == encode_text(ts, text) == encode_line(Line(ts, text))
