"""What the bridge checks between polls: consumer lag per partition, a position past the
end of a partition's log, whether Kafka answers; and the answers of /healthz and /readyz
(served by bridge.status).

Invariant: nothing here decides what is published or where a partition resumes
(bridge.positions does); it only observes, reports, and seeks a partition whose position
is past the end of its log back to the log's start, as Kafka's "out of range" would.
Kafka offset commits are bridge.offsets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from bridge.assign import MetadataWatcher
from bridge.kafkaclient import KafkaClient, TopicPartition
from bridge.metrics import BridgeMetrics

log = logging.getLogger(__name__)

STUCK_AFTER = 30.0  # seconds without a turn of the loop before /healthz says so (Redis calls time out in 3 s)


class Health:
    """Updates the lag and Kafka gauges; seeks a partition past the end of its log; tells
    whether the bridge is alive and ready."""

    def __init__(self, metrics: BridgeMetrics) -> None:
        self.metrics = metrics
        self.lag_labels: set[tuple[str, str]] = set()
        self.beyond_end: set[TopicPartition] = set()
        self.kafka_connected = True
        self.redis_down = False
        self.started = False  # a broker answered and the partitions are being taken
        self.partitions = 0  # assigned to this process (kept by the consume loop's thread)
        self.last_turn = time.monotonic()

    def turned(self) -> None:
        """The consume loop came round (called every turn, also while paused)."""
        self.last_turn = time.monotonic()

    def live(self) -> tuple[bool, str]:
        """/healthz: the loop turns (or the bridge is still waiting for a broker)."""
        if not self.started:
            return True, "starting: waiting for a Kafka broker"
        idle = time.monotonic() - self.last_turn
        if idle > STUCK_AFTER:
            return False, f"stuck: the consume loop has not turned for {idle:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """/readyz: lines can flow: connected to Kafka, Redis answering."""
        if not self.started:
            return False, "starting: waiting for a Kafka broker"
        if self.redis_down:
            return False, "Redis is failing: consumption paused until it answers"
        if not self.kafka_connected:
            return False, "no Kafka broker answers"
        return True, f"ok: {self.partitions} partition{'' if self.partitions == 1 else 's'}"

    def forget(self, parts: Iterable[TopicPartition]) -> None:
        """Partitions that left this process: drop their lag series."""
        for tp in parts:
            label = (tp.topic, str(tp.partition))
            if label in self.lag_labels:
                self.lag_labels.discard(label)
                self.metrics.consumer_lag.remove(*label)

    def update_lag(self, consumer: KafkaClient, expected: dict[TopicPartition, int]) -> None:
        """Consumer lag per partition; also notices a position beyond the end of the log."""
        paused = consumer.paused()
        beyond: set[TopicPartition] = set()
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            nxt = expected.get(tp)
            if high is None or nxt is None or tp in paused:
                continue
            if nxt > high:
                beyond.add(tp)
            label = (tp.topic, str(tp.partition))
            self.lag_labels.add(label)
            self.metrics.consumer_lag.labels(*label).set(max(0, high - nxt))
        # A position past the high watermark twice in a row (fetches refresh the watermark
        # in between) means the log ends before it (it started over, or was truncated) and
        # the broker did not say "out of range" (some return an empty fetch instead); read
        # it from its start as Kafka's reset would: the offsets then going backwards let
        # bridge.positions decide where it goes on.
        for tp in beyond & self.beyond_end:
            log.warning("%s:%d: position is past the end of the log; reading it from its start", *tp)
            consumer.seek_to_beginning(tp)
        self.beyond_end = beyond - self.beyond_end

    def watch_kafka(self, watcher: MetadataWatcher) -> None:
        connected = watcher.answering()
        self.metrics.kafka_up.set(1 if connected else 0)
        if connected and not self.kafka_connected:
            self.metrics.kafka_reconnects.inc()
            log.info("Kafka answers again")
        elif not connected and self.kafka_connected:
            log.warning("no Kafka broker has answered for %.0fs; the client keeps retrying", 3 * watcher.interval)
        self.kafka_connected = connected
