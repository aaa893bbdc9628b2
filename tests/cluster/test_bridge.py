"""End to end on Redis Cluster: a topic split by key over 50 streams on the three shards,
through the bridge (SIGKILLed mid-stream) to a gateway's WebSocket viewers: every Kafka
offset published exactly once, every line viewed once and in order, the catalogue across
shards, one pub/sub connection per primary."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from pathlib import Path

import redis

from embedded import KafkaBroker, RedisClusterNodes
from tests.cluster.test_gateway import pubsub_connections
from tests.support import GatewayProc, Service, WsClient, create_topic, http_get
from wire import Keys

KEYS = [f"k{i}" for i in range(50)]
VIEWERS = 10  # each watches every tenth stream


class KeyedFeeder(threading.Thread):
    """Produces `total` lines 'p:i' with keys round-robin over KEYS, over two partitions."""

    def __init__(self, bootstrap: str, topic: str, total: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.total, self.rate = bootstrap, topic, total, rate
        self.error: BaseException | None = None
        self.paced = threading.Event()

    def run(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        try:
            started = time.monotonic()
            for i in range(self.total):
                key = KEYS[i % len(KEYS)]
                producer.send(self.topic, f"{i:06d}".encode(), key=key.encode(), partition=i % 2)
                if i % 200 == 199:
                    self.paced.wait(max(0.0, started + i / self.rate - time.monotonic()))
            producer.flush()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            producer.close()


async def test_fifty_streams_on_three_shards_through_kafka_and_a_killed_bridge_reach_viewers_once_in_order(
    redis_cluster: RedisClusterNodes,
    cclient: redis.RedisCluster,
    ckeys: Keys,
    cluster_env: dict[str, str],
    kafka: KafkaBroker,
    services: list[Service],
    tmp_path: Path,
) -> None:
    topic = f"ccrash-{uuid.uuid4().hex[:6]}"
    create_topic(kafka.bootstrap, topic, partitions=2)
    config = tmp_path / "bridge.yaml"
    config.write_text(
        json.dumps(
            {"bridge": {"topics": [topic], "routes": [{"topic": topic, "split_by": "key", "keep_whole": False}]}}
        )
    )
    env = dict(
        cluster_env,
        TAILGATE_CONFIG=str(config),
        TAILGATE_KAFKA_BOOTSTRAP=kafka.bootstrap,
        TAILGATE_BRIDGE_GROUP_ID=f"g{uuid.uuid4().hex[:8]}",
        TAILGATE_BRIDGE_METRICS_PORT="0",
        TAILGATE_REDIS_HISTORY_MAXLEN="1000000",
    )
    streams = [f"kafka:{topic}/{k}" for k in KEYS]
    assert len({redis_cluster.owner(ckeys.slot(s)) for s in streams}) == 3

    def texts_of(stream: str) -> list[str]:
        return [json.loads(b"{" + f[b"d"] + b"}")["text"] for _, f in cclient.xrange(ckeys.hist(stream))]

    def published() -> int:
        return sum(cclient.xlen(ckeys.hist(s)) for s in streams)

    def bridge() -> Service:
        svc = Service("bridge", env, args=["--static"], log_dir=tmp_path)
        services.append(svc)
        return svc.start()

    gw = GatewayProc(cluster_env, log_dir=tmp_path)
    services.append(gw)
    gw.start()
    viewers = [await WsClient.connect(gw.ws_url) for _ in range(VIEWERS)]
    watcher = {s: viewers[i % VIEWERS] for i, s in enumerate(streams)}
    for s, viewer in watcher.items():
        await viewer.subscribe(s)
    feeder = KeyedFeeder(kafka.bootstrap, topic, total=12_000, rate=4_000)
    feeder.start()
    first = bridge()
    await viewers[0].wait_for(lambda: published() >= 2_000, 30, what="lines before the kill")
    first.kill()  # SIGKILL, mid-stream: some slots' calls of a batch may be in, others not
    assert published() < feeder.total, "the stream ended before the kill; nothing was tested"
    bridge()
    await asyncio.to_thread(feeder.join, 30)
    assert feeder.error is None
    await viewers[0].wait_for(lambda: published() >= feeder.total, 60, what="every line")
    # each stream's offsets once, in offset order (a key's lines are on one partition)
    expected = {s: [f"{i:06d}" for i in range(k, feeder.total, len(KEYS))] for k, s in enumerate(streams)}
    assert {s: texts_of(s) for s in streams} == expected
    # the streams really are on the three primaries: each holds some of their histories
    on_node = {}
    for port in redis_cluster.primaries():
        with redis_cluster.client(port) as node:
            on_node[port] = {k.decode() for k in node.scan_iter(match=ckeys.hist("*"), count=1000)}
    assert sorted(k for keys in on_node.values() for k in keys) == sorted(ckeys.hist(s) for s in streams)
    assert all(on_node.values()), {port: len(keys) for port, keys in on_node.items()}
    # every viewer got each of its streams' lines once, in order, live
    for s, viewer in watcher.items():
        await viewer.wait_for(lambda v=viewer, s=s: len(v.texts(s)) >= len(expected[s]), 30, what=f"every line of {s}")
        assert viewer.texts(s) == expected[s], s
    for viewer in viewers:
        assert not viewer.of_type("gap") and not viewer.of_type("dropped")
    assert pubsub_connections(redis_cluster) == dict.fromkeys(redis_cluster.primaries(), 1)
    status, body = http_get(gw.base + "/api/streams")
    listed = {e["stream"]: e["lines"] for e in json.loads(body)["streams"]}
    assert status == 200 and {s: listed.get(s) for s in streams} == {s: len(t) for s, t in expected.items()}
    for viewer in viewers:
        await viewer.close()
