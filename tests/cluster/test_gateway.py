"""A gateway on Redis Cluster: streams on three shards, one sharded pub/sub connection per
primary, viewers that keep every line once across a `redis-cli --cluster reshard` and a failover."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from pathlib import Path

import redis
from redis.exceptions import RedisClusterException

from embedded import RedisClusterNodes
from tests.support import GatewayProc, Service, WsClient, http_get
from wire import Checkpoint, Keys, Line, Publisher, StreamBatch, encode_line
from wire.cluster import sync_client

CP = Checkpoint("numbered", "n", 0)


def publish(pub: Publisher, stream: str, texts: list[str]) -> None:
    pub.publish([StreamBatch(stream, [(0, encode_line(Line(time.time(), t))) for t in texts])])


def pubsub_connections(nodes: RedisClusterNodes) -> dict[int, int]:
    """The gateway's pub/sub connections on each primary now (CLIENT LIST on each node)."""
    out = {}
    for port in nodes.primaries():
        with nodes.client(port) as c:
            out[port] = sum(1 for cl in c.client_list() if cl.get("name") == "tailgate-gateway-pubsub")
    return out


def start(env: dict[str, str], services: list[Service], tmp_path: Path) -> GatewayProc:
    gw = GatewayProc(env, log_dir=tmp_path)
    services.append(gw)
    return gw.start()


class Numbered(threading.Thread):
    """Publishes 'n <i>' to one stream every few ms through the cluster client, retrying a
    publish that failed (MOVED, TRYAGAIN, a node down) as the bridge does: with a
    checkpoint (seq i), so a publish the killed primary ran and passed to its replica but
    never answered is skipped when retried, not written twice. A viewer's duplicate is
    then the gateway's, never the producer's."""

    def __init__(self, nodes: RedisClusterNodes, keys: Keys, stream: str) -> None:
        super().__init__(daemon=True)
        self.pub = Publisher(sync_client("redis://", nodes.seeds, socket_timeout=2), keys)
        self.stream = stream
        self.stop = threading.Event()
        self.published = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                n = self.published
                self.pub.publish([StreamBatch(self.stream, [(n, encode_line(Line(time.time(), f"n {n}")))])], CP)
                self.published += 1
            except (redis.RedisError, RedisClusterException):
                pass
            self.stop.wait(0.005)


def check_numbered(client: WsClient, stream: str, total: int) -> None:
    """Every line once and in order, or a `gap` right where lines are missing."""
    seen = [int(t.split()[1]) for t in client.texts(stream)]
    assert len(seen) == len(set(seen)), "a line came twice"
    assert seen == sorted(seen), "lines out of order"
    gaps = [f for f in client.of_type("gap") if f["stream"] == stream]
    if not gaps:
        assert seen == list(range(total)), f"a hole without a gap: {sorted(set(range(total)) - set(seen))[:10]}"


async def test_streams_on_three_shards_one_pubsub_connection_per_primary(
    redis_cluster: RedisClusterNodes, cclient: redis.RedisCluster, ckeys: Keys, cluster_env, services, tmp_path
) -> None:
    gw = start(cluster_env, services, tmp_path)
    pub = Publisher(cclient, ckeys)
    streams = [f"kafka:spread{i}" for i in range(9)]
    assert len({redis_cluster.owner(ckeys.slot(s)) for s in streams}) == 3
    for s in streams:
        publish(pub, s, [f"{s} old {i}" for i in range(3)])
    viewers = {s: await WsClient.connect(gw.ws_url) for s in streams}
    for s, c in viewers.items():
        await c.subscribe(s, backlog=2)
    for s in streams:
        publish(pub, s, [f"{s} new {i}" for i in range(5)])
    for s, c in viewers.items():
        await c.wait_for(lambda c=c, s=s: len(c.texts(s)) == 7, what=f"every line of {s}")
        assert c.texts(s) == [f"{s} old {i}" for i in (1, 2)] + [f"{s} new {i}" for i in range(5)]
    assert pubsub_connections(redis_cluster) == dict.fromkeys(redis_cluster.primaries(), 1)
    status, body = http_get(gw.base + "/api/streams")
    listed = {e["stream"]: e["lines"] for e in json.loads(body)["streams"]}
    assert status == 200 and all(listed.get(s) == 8 for s in streams), listed
    _, metrics = http_get(gw.base + "/metrics")
    assert metrics.decode().count("tailgate_gateway_redis_shard_connections{") == 3
    for c in viewers.values():
        await c.close()
    # the last viewer gone, each stream is SUNSUBSCRIBEd on its owner; the connections stay
    for s in streams:
        with redis_cluster.client(redis_cluster.owner(ckeys.slot(s))) as node:
            await c.wait_for(
                lambda node=node, s=s: node.execute_command("PUBSUB", "SHARDNUMSUB", ckeys.live(s))[1] == 0,
                what=f"{s} unsubscribed",
            )
    assert pubsub_connections(redis_cluster) == dict.fromkeys(redis_cluster.primaries(), 1)


async def watch_numbered(gw: GatewayProc, nodes: RedisClusterNodes, keys: Keys, stream: str):
    feed = Numbered(nodes, keys, stream)
    viewer = await WsClient.connect(gw.ws_url)
    await viewer.subscribe(stream)
    feed.start()
    await viewer.wait_for(lambda: len(viewer.texts(stream)) >= 20, what="lines before the fault")
    return feed, viewer


async def finish_numbered(feed: Numbered, viewer: WsClient, stream: str) -> None:
    after = feed.published + 20
    await viewer.wait_for(lambda: feed.published >= after, timeout=15, what="publishing again after the fault")
    feed.stop.set()
    feed.join()
    await viewer.wait_for(
        lambda: viewer.texts(stream) and viewer.texts(stream)[-1] == f"n {feed.published - 1}",
        timeout=15,
        what="the last line",
    )
    check_numbered(viewer, stream, feed.published)
    await viewer.close()


def stream_in_slot(keys: Keys, slot: int, name: str) -> str:
    """A stream name starting with `name` whose keys are in `slot`."""
    return next(f"{name}{n}" for n in itertools.count() if keys.slot(f"{name}{n}") == slot)


async def test_a_watched_stream_whose_slot_is_resharded_while_lines_flow_keeps_every_line_once(
    redis_cluster: RedisClusterNodes, ckeys: Keys, cluster_env, services, tmp_path
) -> None:
    gw = start(cluster_env, services, tmp_path)
    source, target = redis_cluster.primaries()[:2]
    # `redis-cli --cluster reshard` moves a source's lowest slots first: the watched
    # stream's slot is in the middle of the 512 moved, so slots move before and after it
    moved = redis_cluster.slots_of(source)[:512]
    slot = moved[256]
    stream = stream_in_slot(ckeys, slot, "kafka:moving")
    feed, viewer = await watch_numbered(gw, redis_cluster, ckeys, stream)
    before = feed.published
    await asyncio.to_thread(redis_cluster.reshard, source, target, len(moved))
    assert feed.published > before, "no line was published during the reshard"
    assert redis_cluster.owner(slot) == target
    assert set(moved) <= set(redis_cluster.slots_of(target))
    await finish_numbered(feed, viewer, stream)
    assert not viewer.of_type("gap"), "a reshard loses nothing: no gap"
    assert pubsub_connections(redis_cluster) == dict.fromkeys(redis_cluster.primaries(), 1)


async def test_a_manual_failover_of_a_watched_streams_primary_loses_nothing(
    redis_cluster: RedisClusterNodes, ckeys: Keys, cluster_env, services, tmp_path
) -> None:
    gw = start(cluster_env, services, tmp_path)
    stream = "kafka:handover"
    feed, viewer = await watch_numbered(gw, redis_cluster, ckeys, stream)
    old = redis_cluster.owner(ckeys.slot(stream))
    new = redis_cluster.failover(old)
    assert redis_cluster.owner(ckeys.slot(stream)) == new
    await finish_numbered(feed, viewer, stream)
    assert not viewer.of_type("gap"), "a manual failover waits for the replica: no gap"
    assert pubsub_connections(redis_cluster) == dict.fromkeys(redis_cluster.primaries(), 1)


async def test_viewers_resume_when_their_shard_primary_is_killed(
    redis_cluster: RedisClusterNodes, ckeys: Keys, cluster_env, services, tmp_path
) -> None:
    gw = start(cluster_env, services, tmp_path)
    stream = "kafka:failing"
    feed, viewer = await watch_numbered(gw, redis_cluster, ckeys, stream)
    dead = redis_cluster.owner(ckeys.slot(stream))
    redis_cluster.kill(dead)
    redis_cluster.wait_failover(dead)
    await finish_numbered(feed, viewer, stream)
    assert pubsub_connections(redis_cluster) == dict.fromkeys(redis_cluster.primaries(), 1)
