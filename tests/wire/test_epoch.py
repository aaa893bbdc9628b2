"""A stream's history epoch (wire.epoch): born with the history in the publish step,
carried by every live message, unchanged while the history lives, new whenever the
history is created again; readable by the gateway in the MULTI that reads history."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis
import redis.asyncio as aioredis

from embedded import RedisServer
from wire import Checkpoint, Keys, Line, Publisher, StreamBatch, encode_line
from wire.envelope import frame_ids
from wire.epoch import epoch_of, parse_epoch, queue_read, read_epoch

STREAM = "kafka:epochs"


@pytest.mark.unit
def test_frame_ids_reads_the_epoch_and_still_reads_a_header_without_one() -> None:
    array = b'[{"id":"5-0","ts":1,"text":"a"}]'
    new = frame_ids(b"5-0 7-2 3 18c2f1a0b3c4d5e6f\n" + array)
    assert new == ((5, 0), (7, 2), 3, array, "18c2f1a0b3c4d5e6f")
    assert (new.first, new.last, new.count, new.lines, new.epoch) == tuple(new)
    old = frame_ids(b"5-0 7-2 3\n" + array)  # a producer from before epochs
    assert old == ((5, 0), (7, 2), 3, array, None)
    for bad in [b"5-0 7-2\n[]", b"5-0 7-2 3 e x\n[]", b"5-0 7-2 3 \xff\n[]", b"5-0 7-2 three e\n[]"]:
        with pytest.raises(ValueError):
            frame_ids(bad)


@pytest.mark.unit
def test_epoch_replies_and_client_sent_epochs_are_validated() -> None:
    assert epoch_of(1, b"18c2f1a0b3c4d5e6f") == "18c2f1a0b3c4d5e6f"
    assert epoch_of(1, "abc") == "abc"
    assert epoch_of(0, b"18c2f1a0b3c4d5e6f") is None  # history gone, epoch key left behind
    assert epoch_of(1, None) is None  # history without an epoch: the next publish makes one
    for bad in ["", "A1", "a b", "x" * 33, "é", 7]:
        with pytest.raises(ValueError):
            parse_epoch(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        epoch_of(1, b"not an epoch")


def _line(text: str) -> bytes:
    return encode_line(Line(1.0, text))


def _publish(pub: Publisher, *texts: str, stream: str = STREAM) -> None:
    pub.publish([StreamBatch(stream, [(0, _line(t)) for t in texts])])


def _live_epochs(pubsub: redis.client.PubSub, n: int) -> list[str | None]:
    out = []
    for _ in range(n):
        msg = pubsub.get_message(timeout=2)
        assert msg is not None and msg["type"] == "message"
        out.append(frame_ids(msg["data"]).epoch)
    return out


def test_the_epoch_is_born_with_the_history_and_kept_while_it_lives(rclient: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    pub = Publisher(rclient, keys, maxlen=5)
    pubsub = rclient.pubsub()
    pubsub.subscribe(keys.live(STREAM))
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    assert read_epoch(rclient, keys, STREAM) is None  # nothing published yet

    _publish(pub, "a", "b")
    epoch = read_epoch(rclient, keys, STREAM)
    assert epoch is not None and len(epoch) == 17
    # stable across publishes, trimming, and a second publisher (a restarted producer)
    for i in range(6):
        _publish(pub, *[f"line {i}.{j}" for j in range(3)])
    _publish(Publisher(rclient, keys), "from another producer")
    assert read_epoch(rclient, keys, STREAM) == epoch
    assert _live_epochs(pubsub, 8) == [epoch] * 8
    pubsub.close()


def test_a_history_created_again_gets_a_new_epoch(rclient: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    pub = Publisher(rclient, keys)
    _publish(pub, "before")
    first = read_epoch(rclient, keys, STREAM)

    # the history lost (FLUSHALL, restart without persistence, or evicted on its own):
    # the epoch key left behind no longer counts, and the next publish makes a new one
    rclient.delete(keys.hist(STREAM))
    assert rclient.exists(keys.epoch(STREAM)) and read_epoch(rclient, keys, STREAM) is None
    _publish(pub, "after")
    second = read_epoch(rclient, keys, STREAM)
    assert second not in (None, first)

    # the epoch key evicted alone: the history is kept, but gets a new epoch (a loss
    # announced that did not happen, never one hidden)
    rclient.delete(keys.epoch(STREAM))
    assert read_epoch(rclient, keys, STREAM) is None
    _publish(pub, "later")
    third = read_epoch(rclient, keys, STREAM)
    assert third not in (None, first, second)
    assert [f[b"d"] for _, f in rclient.xrange(keys.hist(STREAM))] == [_line("after"), _line("later")]


def test_a_history_from_before_epochs_gets_one_at_its_next_publish(rclient: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    rclient.xadd(keys.hist(STREAM), {"d": _line("old")})  # as the publish step wrote it before epochs
    assert read_epoch(rclient, keys, STREAM) is None
    _publish(Publisher(rclient, keys), "new")
    assert read_epoch(rclient, keys, STREAM) is not None
    assert rclient.xlen(keys.hist(STREAM)) == 2


def test_a_publish_that_skips_everything_creates_neither_history_nor_epoch(rclient: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    pub = Publisher(rclient, keys)
    cp = Checkpoint("g", "t", 0)
    pub.reset_offset(cp, 10)
    assert pub.publish([StreamBatch(STREAM, [(3, _line("redelivered"))])], cp) == (0, 1)
    assert rclient.exists(keys.hist(STREAM), keys.epoch(STREAM)) == 0


def test_the_gateway_reads_the_epoch_in_the_multi_that_reads_history(redis_server: RedisServer, prefix: str) -> None:
    keys = Keys(prefix)
    with redis.Redis.from_url(redis_server.url) as client:
        _publish(Publisher(client, keys), "one", "two")
        expected = read_epoch(client, keys, STREAM)

    async def read() -> tuple[str | None, list[str]]:
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            async with client.pipeline(transaction=True) as pipe:
                queue_read(pipe, keys, STREAM)
                pipe.xinfo_stream(keys.hist(STREAM))
                pipe.xrange(keys.hist(STREAM))
                exists, value, info, entries = await pipe.execute()
            assert info["length"] == 2
            return epoch_of(exists, value), [json.loads(b"{" + f[b"d"] + b"}")["text"] for _, f in entries]
        finally:
            await client.aclose()

    assert asyncio.run(read()) == (expected, ["one", "two"])
