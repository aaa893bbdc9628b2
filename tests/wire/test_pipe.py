"""Publish steps sent one behind another (wire.PublishPipe) and chained calls of one
partition: a call whose predecessor failed is refused, so a failure never leaves a hole
under a newer checkpoint."""

from __future__ import annotations

import pytest
import redis

from wire import Checkpoint, Keys, Line, Publisher, PublishPipe, StreamBatch, encode_line

CP = Checkpoint("g", "t", 0)


def _batch(stream: str, offsets: range) -> StreamBatch:
    return StreamBatch(stream, [(o, encode_line(Line(1.0, f"line {o}"))) for o in offsets])


def _break(rclient: redis.Redis, keys: Keys, stream: str) -> None:
    """Make every XADD to `stream`'s history fail (WRONGTYPE), as a refused write would."""
    rclient.set(keys.hist(stream), "not a stream")


def test_steps_sent_behind_each_other_publish_in_order(rclient: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    pipe = PublishPipe(Publisher(rclient, keys))
    for start in (0, 3, 6):
        pipe.send([([_batch("kafka:t", range(start, start + 3))], CP)])
    assert [pipe.receive() for _ in range(3)] == [(3, 0)] * 3
    texts = [fields[b"d"] for _, fields in rclient.xrange(keys.hist("kafka:t"))]
    assert texts == [encode_line(Line(1.0, f"line {o}")) for o in range(9)]
    assert Publisher(rclient, keys).offsets("g") == {"t:0": 8}
    # the connection went back to the pool once every answer was read
    assert rclient.ping()


def test_a_step_sent_behind_a_failed_one_is_refused_and_leaves_no_hole(rclient: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    pub = Publisher(rclient, keys)
    _break(rclient, keys, "kafka:bad")
    pipe = PublishPipe(pub)
    pipe.send([([_batch("kafka:bad", range(0, 3))], CP)])
    pipe.send([([_batch("kafka:good", range(3, 6))], CP)])
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        pipe.receive()
    with pytest.raises(redis.ResponseError, match="BEHIND"):
        pipe.receive()
    assert pub.offsets("g") == {} and rclient.xlen(keys.hist("kafka:good")) == 0
    # once the fault is gone, both are sent again (after `drop`, as the bridge's worker
    # does) and every line is published once
    pipe.drop()
    rclient.delete(keys.hist("kafka:bad"))
    pipe.send([([_batch("kafka:bad", range(0, 3))], CP)])
    pipe.send([([_batch("kafka:good", range(3, 6))], CP)])
    assert (pipe.receive(), pipe.receive()) == ((3, 0), (3, 0))
    assert pub.offsets("g") == {"t:0": 5}


def test_a_second_call_of_one_partition_in_a_step_is_refused_when_the_first_fails(
    rclient: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    pub = Publisher(rclient, keys)
    _break(rclient, keys, "kafka:bad")
    other = Checkpoint("g", "t", 1)
    step = [([_batch("kafka:bad", range(0, 3))], CP), ([_batch("kafka:good", range(3, 6))], CP)]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        pub.publish_many([*step, ([_batch("kafka:other", range(0, 2))], other)])
    # the failed call's partition moved on by nothing; another partition is not held back
    assert pub.offsets("g") == {"t:1": 1}
    assert rclient.xlen(keys.hist("kafka:good")) == 0
    rclient.delete(keys.hist("kafka:bad"))
    assert pub.publish_many(step) == (6, 0)
    assert pub.offsets("g") == {"t:0": 5, "t:1": 1}


def test_calls_by_hash_on_a_redis_without_the_script_load_it_and_go_in_order(
    rclient: redis.Redis, prefix: str
) -> None:
    """publish_many calls the script by hash; a Redis that lost it (restarted, or a replica
    just promoted) answers NOSCRIPT, and every call goes in once, in order, chain kept."""
    keys = Keys(prefix)
    pub = Publisher(rclient, keys)
    step = [([_batch("kafka:a", range(0, 3))], CP), ([_batch("kafka:b", range(3, 6))], CP)]
    rclient.script_flush()
    assert pub.publish_many(step) == (6, 0)
    assert pub.offsets("g") == {"t:0": 5}
    assert [rclient.xlen(keys.hist(s)) for s in ("kafka:a", "kafka:b")] == [3, 3]
    rclient.script_flush()
    assert pub.publish_many(step) == (0, 6)  # sent again: skipped, not doubled
