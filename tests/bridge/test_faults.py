"""The bridge survives faults on the real broker and Redis: nothing lost, nothing doubled."""

from __future__ import annotations

import re
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from bridge.health import Health
from bridge.metrics import BridgeMetrics
from embedded import KafkaBroker, RedisServer, free_port, wait_until
from embedded.services import port_open
from tests.support import create_topic, http_get, produce
from wire import Keys
from wire.epoch import read_epoch


class Feeder(threading.Thread):
    """Produces `total` numbered lines round-robin over `partitions` at about `rate`/s."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, total: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.partitions, self.total, self.rate = bootstrap, topic, partitions, total, rate
        self.sent = 0
        self.error: BaseException | None = None
        self.paced = threading.Event()  # never set: only used to pace without busy-waiting

    def expected(self) -> list[str]:
        return [self.text(i) for i in range(self.total)]

    def text(self, i: int) -> str:
        return f"{i % self.partitions}:{i:06d}"

    def run(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        try:
            started = time.monotonic()
            for i in range(self.total):
                producer.send(self.topic, self.text(i).encode(), partition=i % self.partitions)
                self.sent = i + 1
                if i % 200 == 199:
                    self.paced.wait(max(0.0, started + i / self.rate - time.monotonic()))
            producer.flush()
        except BaseException as exc:  # noqa: BLE001 - reported by the test that owns the thread
            self.error = exc
        finally:
            producer.close()


def assert_exactly_once(texts: list[str], feeder: Feeder) -> None:
    assert len(texts) == len(set(texts)), f"{len(texts) - len(set(texts))} lines doubled"
    assert sorted(texts) == sorted(feeder.expected()), f"{feeder.total - len(set(texts))} lines missing"
    for p in range(feeder.partitions):
        mine = [t for t in texts if t.startswith(f"{p}:")]
        assert mine == sorted(mine), f"partition {p} out of order"


def test_kill_9_and_sigterm_mid_stream_publish_every_offset_exactly_once(
    kafka: KafkaBroker, start_bridge, history, rclient: redis.Redis, prefix: str, bridge_env: dict[str, str]
) -> None:
    topic = f"crash-{uuid.uuid4().hex[:6]}"
    create_topic(kafka.bootstrap, topic, partitions=2)
    stream = f"kafka:{topic}"
    feeder = Feeder(kafka.bootstrap, topic, partitions=2, total=24_000, rate=6_000)
    feeder.start()
    bridge = start_bridge("--static", TAILGATE_BRIDGE_TOPICS=topic)
    wait_until(lambda: len(history(stream)) >= 4_000, 30, what="lines before the kill")
    bridge.kill()  # SIGKILL, mid-stream
    killed_at = len(history(stream))
    assert killed_at < feeder.total, "the stream ended before the kill; nothing was tested"

    bridge = start_bridge("--static", TAILGATE_BRIDGE_TOPICS=topic)
    wait_until(lambda: len(history(stream)) >= killed_at + 4_000, 30, what="lines after the restart")
    bridge.signal(signal.SIGTERM)
    started = time.monotonic()
    assert bridge.wait(5.5) == 0, bridge.output()
    assert time.monotonic() - started < 5.0
    # everything published is recorded: each partition's offset is its newest line's
    offsets = {
        k.decode(): int(v)
        for k, v in rclient.hgetall(Keys(prefix).offsets(bridge_env["TAILGATE_BRIDGE_GROUP_ID"])).items()
    }
    texts = [line["text"] for line in history(stream)]
    for p in range(2):
        published = sum(1 for t in texts if t.startswith(f"{p}:"))
        assert offsets[f"{topic}:{p}"] == published - 1

    start_bridge("--static", TAILGATE_BRIDGE_TOPICS=topic)
    feeder.join(30)
    assert feeder.error is None
    wait_until(lambda: len(history(stream)) >= feeder.total, 60, what="every line")
    assert_exactly_once([line["text"] for line in history(stream)], feeder)


def test_redis_restored_from_an_older_snapshot_mid_stream_loses_nothing(
    kafka: KafkaBroker, start_bridge, history, prefix: str, tmp_path: Path
) -> None:
    (tmp_path / "redis").mkdir()
    server = RedisServer(workdir=str(tmp_path / "redis")).start()
    client = redis.Redis.from_url(server.url)
    try:
        topic = f"redisfault-{uuid.uuid4().hex[:6]}"
        create_topic(kafka.bootstrap, topic, partitions=2)
        stream = f"kafka:{topic}"
        feeder = Feeder(kafka.bootstrap, topic, partitions=2, total=16_000, rate=4_000)
        feeder.start()
        port = free_port()
        bridge = start_bridge(
            "--static", "--metrics-port", str(port), TAILGATE_BRIDGE_TOPICS=topic, TAILGATE_REDIS_URL=server.url
        )

        def count() -> int:
            try:
                return len(history(stream, client))
            except redis.ConnectionError:
                return 0

        wait_until(lambda: count() >= 3_000, 30, what="lines before the snapshot")
        client.save()
        snapshot = count()
        wait_until(lambda: count() >= snapshot + 2_000, 30, what="lines after the snapshot")
        server.kill()  # crash: the lines after the snapshot are gone from Redis
        wait_until(lambda: "Redis failed" in bridge.output(), 15, what="the bridge to notice")
        # not ready while Redis fails, but alive: the loop keeps turning
        assert probe(port, "/readyz") == (503, "Redis is failing: consumption paused until it answers")
        assert probe(port, "/healthz") == (200, "ok")
        server.start()  # comes back from the snapshot
        feeder.join(30)
        assert feeder.error is None
        wait_until(lambda: count() >= feeder.total, 60, what="every line")
        assert_exactly_once([line["text"] for line in history(stream, client)], feeder)
        assert "Redis is back" in bridge.output()
        assert probe(port, "/readyz") == (200, "ok: 2 partitions")

        # SIGTERM while Redis is down: still exits 0 within 5 s
        server.stop()
        produce(kafka.bootstrap, topic, [b"while redis is down"] * 10)
        wait_until(lambda: bridge.output().count("Redis failed") >= 2, 15, what="the second outage noticed")
        bridge.signal(signal.SIGTERM)
        assert bridge.wait(5) == 0, bridge.output()
    finally:
        client.close()
        server.stop()


def test_broker_restart_with_a_fresh_log_is_survived(start_bridge, history, tmp_path: Path) -> None:
    broker = KafkaBroker(log_path=str(tmp_path / "tansu.log")).start()
    try:
        topic = f"brokerfault-{uuid.uuid4().hex[:6]}"
        create_topic(broker.bootstrap, topic)
        stream = f"kafka:{topic}"
        port = free_port()
        bridge = start_bridge(
            "--static",
            "--metrics-port",
            str(port),
            TAILGATE_BRIDGE_TOPICS=topic,
            TAILGATE_KAFKA_BOOTSTRAP=broker.bootstrap,
        )
        produce(broker.bootstrap, topic, [f"before {i}".encode() for i in range(100)])
        wait_until(lambda: len(history(stream)) == 100, 30, what="lines before the restart")
        assert probe(port, "/readyz") == (200, "ok: 1 partition")

        broker.stop()  # the embedded broker keeps its log in memory: it comes back empty
        wait_until(lambda: scrape(port, "tailgate_bridge_kafka_up") == 0.0, 20, what="kafka_up 0")
        wait_until(lambda: probe(port, "/readyz") == (503, "no Kafka broker answers"), 5, what="not ready")
        assert probe(port, "/healthz") == (200, "ok")
        broker.start()
        wait_until(lambda: _try_create(broker.bootstrap, topic), 30, what="the topic created again")
        produce(broker.bootstrap, topic, [f"after {i}".encode() for i in range(50)])
        wait_until(lambda: len(history(stream)) >= 150, 60, what="lines after the restart")
        texts = [line["text"] for line in history(stream)]
        assert texts == [f"before {i}" for i in range(100)] + [f"after {i}" for i in range(50)]
        assert scrape(port, "tailgate_bridge_offset_resets_total") == 1.0
        # at least one: under load the health probe may also see a slow answer as a gap
        wait_until(lambda: (scrape(port, "tailgate_bridge_kafka_reconnects_total") or 0) >= 1.0, 40, what="a reconnect")
        assert scrape(port, "tailgate_bridge_kafka_up") == 1.0
        assert probe(port, "/readyz")[0] == 200
        assert bridge.proc is not None and bridge.proc.poll() is None
    finally:
        broker.stop()


def scrape(port: int, name: str) -> float | None:
    """One unlabelled sample of the bridge's /metrics, or None."""
    _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", body.decode(), re.M)
    return float(found.group(1)) if found else None


def probe(port: int, path: str) -> tuple[int, str]:
    """A status probe of the bridge: (HTTP status, its one-line reason)."""
    status, body = http_get(f"http://127.0.0.1:{port}{path}")
    return status, body.decode().strip()


def _try_create(bootstrap: str, topic: str) -> bool:
    from kafka.errors import KafkaError

    try:
        create_topic(bootstrap, topic)
    except KafkaError:
        return False
    return True


def test_status_port_while_waiting_for_a_broker_and_when_the_loop_stops_turning(start_bridge) -> None:
    port = free_port()
    start_bridge(
        "--static",
        "--metrics-port",
        str(port),
        TAILGATE_BRIDGE_TOPICS="t",
        TAILGATE_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
    )
    wait_until(lambda: port_open(port), 15, what="the status port")
    assert probe(port, "/healthz") == (200, "starting: waiting for a Kafka broker")
    assert probe(port, "/readyz") == (503, "starting: waiting for a Kafka broker")
    assert http_get(f"http://127.0.0.1:{port}/metrics")[0] == 200

    health = Health(BridgeMetrics())
    health.started = True
    assert health.live() == (True, "ok")
    health.last_turn -= 31
    ok, why = health.live()
    assert not ok and why.startswith("stuck: the consume loop has not turned for 3")


# --- Redis losing its data, Kafka truncating its log (issue 12, defect 6) ----------------


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    """The offsets the bridge's group has committed to Kafka, read without joining it."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return {p: consumer.committed(TopicPartition(topic, p), timeout_ms=5000) for p in range(partitions)}
    finally:
        consumer.close(autocommit=False)


def commit_offset(bootstrap: str, group: str, topic: str, partition: int, offset: int) -> None:
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        consumer.commit({TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)}, timeout_ms=5000)
    finally:
        consumer.close(autocommit=False)


@pytest.mark.parametrize("loss", ["flushall", "restart without persistence"])
def test_redis_losing_its_data_replays_no_old_line_and_gives_the_history_a_new_epoch(
    loss: str, kafka: KafkaBroker, start_bridge, history, bridge_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "redis").mkdir()
    server = RedisServer(workdir=str(tmp_path / "redis")).start()  # its own: FLUSHALL and restart hit no one else
    client = redis.Redis.from_url(server.url)
    keys = Keys(bridge_env["TAILGATE_REDIS_PREFIX"])
    group = bridge_env["TAILGATE_BRIDGE_GROUP_ID"]
    try:
        topic = f"redisloss-{uuid.uuid4().hex[:6]}"
        create_topic(kafka.bootstrap, topic, partitions=2)
        stream = f"kafka:{topic}"
        port = free_port()
        args = ("--static", "--metrics-port", str(port))
        bridge = start_bridge(*args, TAILGATE_BRIDGE_TOPICS=topic, TAILGATE_REDIS_URL=server.url)
        for p in range(2):
            produce(kafka.bootstrap, topic, [f"old {p}:{i}".encode() for i in range(20)], partition=p)
        wait_until(lambda: len(history(stream, client)) == 40, 30, what="the old lines")
        epoch = read_epoch(client, keys, stream)
        produce(kafka.bootstrap, topic, [f"old 0:{i}".encode() for i in range(20, 25)], partition=0)
        wait_until(lambda: len(history(stream, client)) == 45, 30, what="more old lines")
        assert epoch is not None and read_epoch(client, keys, stream) == epoch  # stable across publishes
        wait_until(lambda: committed_offsets(kafka.bootstrap, group, topic, 2) == {0: 25, 1: 20}, 15, what="commits")

        if loss == "flushall":
            client.flushall()
        else:
            server.stop()
            server.start()  # no persistence: it comes back empty
        # partition 0 goes on; partition 1 publishes nothing, so Redis has no offset for it
        produce(kafka.bootstrap, topic, [f"new 0:{i}".encode() for i in range(3)], partition=0)
        wait_until(lambda: _count(history, stream, client) == 3, 30, what="the first new lines")
        new_epoch = read_epoch(client, keys, stream)
        assert new_epoch not in (None, epoch)

        # a restart (a deploy, a crash) must not replay partition 1 from its start
        bridge.signal(signal.SIGTERM)
        assert bridge.wait(5.5) == 0, bridge.output()
        bridge = start_bridge(*args, TAILGATE_BRIDGE_TOPICS=topic, TAILGATE_REDIS_URL=server.url)
        for p in range(2):
            produce(kafka.bootstrap, topic, [f"new {p}:{i}".encode() for i in range(3, 5)], partition=p)
        last = {"new 0:4", "new 1:4"}
        wait_until(lambda: last <= {line["text"] for line in history(stream, client)}, 30, what="the last lines")
        texts = [line["text"] for line in history(stream, client)]
        assert sorted(texts) == sorted([f"new 0:{i}" for i in range(5)] + ["new 1:3", "new 1:4"]), texts
        assert scrape(port, "tailgate_bridge_checkpoint_fallbacks_total") == 1.0
        assert f"{topic}:1: Redis holds no offset for it" in bridge.output()
        assert "resuming at offset 20, committed to Kafka" in bridge.output()
        assert read_epoch(client, keys, stream) == new_epoch  # stable across a bridge restart
    finally:
        client.close()
        server.stop()


def _count(history, stream: str, client: redis.Redis) -> int:
    try:
        return len(history(stream, client))
    except redis.ConnectionError:
        return -1


def test_a_truncated_log_is_not_replayed(
    kafka: KafkaBroker, start_bridge, history, rclient: redis.Redis, prefix: str, bridge_env: dict[str, str]
) -> None:
    """A truncation (the log's end moving backwards after a leader change, the group's
    committed offset kept) is made here by hand: the embedded broker is one broker with
    no replicas, so no leader change can truncate its log, and it takes a topic's
    committed offsets with the topic. So the test deletes the topic, recreates it with
    the surviving prefix of the old log, and commits the group's offset again as Kafka's
    __consumer_offsets would have kept it. The bridge then sees what a truncation shows:
    its position (30) past the log's end (20), a committed offset (30) past it too."""
    topic = f"truncated-{uuid.uuid4().hex[:6]}"
    create_topic(kafka.bootstrap, topic)
    stream = f"kafka:{topic}"
    group = bridge_env["TAILGATE_BRIDGE_GROUP_ID"]
    port = free_port()
    args = ("--static", "--metrics-port", str(port))
    bridge = start_bridge(*args, TAILGATE_BRIDGE_TOPICS=topic)
    produce(kafka.bootstrap, topic, [f"old {i}".encode() for i in range(30)])
    wait_until(lambda: len(history(stream)) == 30, 30, what="the old lines")
    wait_until(lambda: committed_offsets(kafka.bootstrap, group, topic, 1) == {0: 30}, 15, what="the commit")
    bridge.signal(signal.SIGTERM)
    assert bridge.wait(5.5) == 0, bridge.output()

    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()
    wait_until(lambda: _try_create(kafka.bootstrap, topic), 30, what="the topic created again")
    commit_offset(kafka.bootstrap, group, topic, 0, 30)
    produce(kafka.bootstrap, topic, [f"old {i}".encode() for i in range(20)])  # what the truncation left

    bridge = start_bridge(*args, TAILGATE_BRIDGE_TOPICS=topic)
    # (before the fix, the bridge republished the surviving prefix instead)
    wait_until(
        lambda: scrape(port, "tailgate_bridge_log_truncations_total") == 1.0 or len(history(stream)) > 30,
        30,
        what="the truncation noticed",
    )
    produce(kafka.bootstrap, topic, [f"new {i}".encode() for i in range(5)])  # offsets 20..24
    wait_until(lambda: len(history(stream)) >= 35, 30, what="the new lines")
    texts = [line["text"] for line in history(stream)]
    assert texts == [f"old {i}" for i in range(30)] + [f"new {i}" for i in range(5)]
    assert scrape(port, "tailgate_bridge_truncated_offsets_total") == 10.0
    assert scrape(port, "tailgate_bridge_offset_resets_total") == 0.0
    assert "the log was truncated (position 30 is past its end 20" in bridge.output()
    assert int(rclient.hget(Keys(prefix).offsets(group), f"{topic}:0")) == 24
