"""The publish step on Redis Cluster: one call per slot, streams spread over the shards,
and effectively-once per slot when a batch is sent again."""

from __future__ import annotations

import redis

from embedded import RedisClusterNodes
from wire import Checkpoint, Keys, Publisher, StreamBatch
from wire.envelope import encode_lines
from wire.epoch import read_epoch


def _batch(stream: str, seqs: range) -> StreamBatch:
    return StreamBatch(stream, list(zip(seqs, encode_lines(1.0, [f"{stream} line {s}" for s in seqs]), strict=True)))


def test_streams_spread_over_shards_each_keeping_its_keys_on_one_node(
    redis_cluster: RedisClusterNodes, cclient: redis.RedisCluster, ckeys: Keys
) -> None:
    pub = Publisher(cclient, ckeys)
    streams = [f"kafka:spread{i}" for i in range(12)]
    published, skipped = pub.publish([_batch(s, range(3)) for s in streams])
    assert (published, skipped) == (36, 0)
    owners = {s: redis_cluster.owner(ckeys.slot(s)) for s in streams}
    assert len(set(owners.values())) == 3, owners
    for stream, port in owners.items():
        with redis_cluster.client(port) as node:  # the owner holds history, epoch and catalogue entry itself
            assert node.xlen(ckeys.hist(stream)) == 3
            assert node.exists(ckeys.epoch(stream))
            assert node.hget(ckeys.counts_in(ckeys.slot(stream)), stream) == b"3"
            assert node.zscore(ckeys.seen_in(ckeys.slot(stream)), stream) is not None
        assert read_epoch(cclient, ckeys, stream) is not None


def test_a_batch_sent_again_after_a_partial_failure_doubles_nothing(cclient: redis.RedisCluster, ckeys: Keys) -> None:
    pub = Publisher(cclient, ckeys)
    streams = [f"kafka:once/{i}" for i in range(6)]
    cp = Checkpoint("g", "once", 0)
    # One slot's call went through before the batch failed elsewhere: it holds lines 0-9.
    assert pub.publish([_batch(streams[0], range(10))], cp) == (10, 0)
    assert pub.offsets("g") == {"once:0": 9}
    # The whole batch is sent again: the slot that had it skips it, the others publish.
    published, skipped = pub.publish([_batch(s, range(10)) for s in streams], cp)
    assert (published, skipped) == (50, 10)
    assert all(cclient.xlen(ckeys.hist(s)) == 10 for s in streams)
    assert pub.offsets("g") == {"once:0": 9}
    # A log that started over: every slot's checkpoint is lowered with the resume point.
    pub.reset_offset(cp, -1)
    assert pub.offsets("g") == {}
    assert pub.publish([_batch(streams[0], range(3))], cp) == (3, 0)


def test_primaries_without_the_script_get_it_and_every_slot_publishes_once(
    redis_cluster: RedisClusterNodes, cclient: redis.RedisCluster, ckeys: Keys
) -> None:
    """A call per slot goes by hash; primaries that lost the script (EVAL's cache is not
    replicated to a promoted replica) get it loaded, and the calls they refused go again."""
    pub = Publisher(cclient, ckeys)
    streams = [f"kafka:noscript{i}" for i in range(9)]
    for port in redis_cluster.primaries():
        with redis_cluster.client(port) as node:
            node.script_flush()
    cp = Checkpoint("g", "noscript", 0)
    assert pub.publish([_batch(s, range(3)) for s in streams], cp) == (27, 0)
    assert all(cclient.xlen(ckeys.hist(s)) == 3 for s in streams)
    assert pub.offsets("g") == {"noscript:0": 2}
