"""Several bridge processes share partitions (static split, consumer group) and pick up
new topics by pattern; every line is published exactly once."""

from __future__ import annotations

import signal
import uuid

from embedded import KafkaBroker, wait_until
from tests.bridge.test_faults import Feeder, assert_exactly_once
from tests.support import create_topic, produce


def test_two_static_instances_on_four_partitions_publish_every_line_once(
    kafka: KafkaBroker, start_bridge, history
) -> None:
    topic = f"split-{uuid.uuid4().hex[:6]}"
    create_topic(kafka.bootstrap, topic, partitions=4)
    stream = f"kafka:{topic}"
    a = start_bridge("--instance", "0", "--instances", "2", TAILGATE_BRIDGE_TOPICS=topic)
    b = start_bridge("--instance", "1", "--instances", "2", TAILGATE_BRIDGE_TOPICS=topic)
    feeder = Feeder(kafka.bootstrap, topic, partitions=4, total=8_000, rate=8_000)
    feeder.start()
    feeder.join(30)
    assert feeder.error is None
    wait_until(lambda: len(history(stream)) >= feeder.total, 30, what="every line")
    assert_exactly_once([line["text"] for line in history(stream)], feeder)
    assert "4 new partitions" not in a.output() + b.output()
    assert "2 new partitions: " + f"{topic}:0, {topic}:2" in a.output()
    assert "2 new partitions: " + f"{topic}:1, {topic}:3" in b.output()


def test_consumer_group_rebalances_lose_and_double_nothing(kafka: KafkaBroker, start_bridge, history) -> None:
    topic = f"group-{uuid.uuid4().hex[:6]}"
    create_topic(kafka.bootstrap, topic, partitions=4)
    stream = f"kafka:{topic}"
    feeder = Feeder(kafka.bootstrap, topic, partitions=4, total=30_000, rate=3_000)
    a = start_bridge(TAILGATE_BRIDGE_TOPICS=topic)
    feeder.start()
    wait_until(lambda: len(history(stream)) >= 2_000, 30, what="the first member publishing")
    b = start_bridge(TAILGATE_BRIDGE_TOPICS=topic)  # joins: partitions move
    wait_until(lambda: "partitions assigned" in b.output(), 30, what="the second member's share")
    a.signal(signal.SIGTERM)  # leaves: partitions move again
    assert a.wait(5) == 0
    assert feeder.is_alive(), "the stream ended before the rebalances; nothing was tested"
    wait_until(lambda: "4 partitions assigned" in b.output(), 30, what="the survivor taking every partition")
    feeder.join(30)
    assert feeder.error is None
    wait_until(lambda: len(history(stream)) >= feeder.total, 30, what="every line")
    assert_exactly_once([line["text"] for line in history(stream)], feeder)


def test_pattern_picks_up_a_topic_created_later(kafka: KafkaBroker, start_bridge, history) -> None:
    uid = uuid.uuid4().hex[:6]
    start_bridge("--static", "--pattern", f"late-{uid}-.*")
    start_bridge("--pattern", f"glate-{uid}-.*")  # consumer-group mode
    for prefix in ("late", "glate"):
        topic = f"{prefix}-{uid}-new"
        create_topic(kafka.bootstrap, topic, partitions=2)
        produce(kafka.bootstrap, topic, [f"{prefix} {i}".encode() for i in range(20)], partition=1)
    for prefix in ("late", "glate"):
        stream = f"kafka:{prefix}-{uid}-new"
        wait_until(lambda s=stream: len(history(s)) >= 20, 30, what=f"lines of {stream}")
        assert [line["text"] for line in history(stream)] == [f"{prefix} {i}" for i in range(20)]
