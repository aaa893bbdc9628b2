"""End to end on Redis Cluster: a topic split by key over streams on every shard, through
the bridge (SIGKILLed mid-stream) to a gateway's viewers: every Kafka offset published
exactly once, every line viewed once and in order, one pub/sub connection per primary."""

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
from tests.support import GatewayProc, Service, WsClient, create_topic
from wire import Keys

KEYS = [f"k{i}" for i in range(12)]


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


async def test_bridge_killed_mid_stream_on_a_cluster_publishes_and_delivers_every_offset_once(
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

    def texts() -> list[str]:
        return [json.loads(b"{" + f[b"d"] + b"}")["text"] for s in streams for _, f in cclient.xrange(ckeys.hist(s))]

    def published() -> int:
        return sum(cclient.xlen(ckeys.hist(s)) for s in streams)

    def bridge() -> Service:
        svc = Service("bridge", env, args=["--static"], log_dir=tmp_path)
        services.append(svc)
        return svc.start()

    gw = GatewayProc(cluster_env, log_dir=tmp_path)
    services.append(gw)
    gw.start()
    viewer = await WsClient.connect(gw.ws_url)
    for s in streams:
        await viewer.subscribe(s)
    feeder = KeyedFeeder(kafka.bootstrap, topic, total=12_000, rate=4_000)
    feeder.start()
    first = bridge()
    await viewer.wait_for(lambda: published() >= 2_000, 30, what="lines before the kill")
    first.kill()  # SIGKILL, mid-stream: some slots' calls of a batch may be in, others not
    assert published() < feeder.total, "the stream ended before the kill; nothing was tested"
    bridge()
    await asyncio.to_thread(feeder.join, 30)
    assert feeder.error is None
    await viewer.wait_for(lambda: published() >= feeder.total, 60, what="every line")
    got = texts()
    assert len(got) == len(set(got)) == feeder.total, f"{len(got) - len(set(got))} doubled"
    for s in streams:  # each stream in offset order
        mine = [json.loads(b"{" + f[b"d"] + b"}")["text"] for _, f in cclient.xrange(ckeys.hist(s))]
        assert mine == sorted(mine, key=lambda t: (int(t) % 2, int(t)))
    # the viewer got each stream's history exactly, live
    await viewer.wait_for(lambda: sum(len(viewer.texts(s)) for s in streams) >= feeder.total, 30, what="every line")
    for s in streams:
        assert viewer.texts(s) == [json.loads(b"{" + f[b"d"] + b"}")["text"] for _, f in cclient.xrange(ckeys.hist(s))]
    assert not viewer.of_type("gap") and not viewer.of_type("dropped")
    assert pubsub_connections(redis_cluster) == dict.fromkeys(redis_cluster.primaries(), 1)
    await viewer.close()
