"""The bridge's Prometheus metrics (served at /metrics by bridge.status).

Every metric lives in the bridge's own registry (one per Bridge), so tests and embedded
use never collide with other code's metrics in the same process.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bridge.batch import Work

log = logging.getLogger(__name__)

LAG_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0)
BATCH_BUCKETS = (1, 5, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 50000)


class BridgeMetrics:
    """Counters, gauges and histograms of one bridge process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ns = "tailgate_bridge"
        self.messages_in = Counter(f"{ns}_messages_in", "Kafka messages consumed", ["topic"], registry=r)
        self.bytes_in = Counter(f"{ns}_bytes_in", "Bytes of Kafka message values consumed", ["topic"], registry=r)
        self.lines_in = Counter(f"{ns}_lines_in", "Lines decoded from Kafka messages", ["topic"], registry=r)
        self.lines_out = Counter(f"{ns}_lines_out", "Lines published to Redis", ["stream"], registry=r)
        self.bytes_out = Counter(f"{ns}_bytes_out", "Bytes of encoded lines published", ["stream"], registry=r)
        self.skipped = Counter(
            f"{ns}_duplicates_skipped", "Lines not published again: their offset was already recorded", registry=r
        )
        self.decode_errors = Counter(
            f"{ns}_decode_errors", "Messages or lines handled by a decoding or routing rule", ["kind"], registry=r
        )
        self.batch_lines = Histogram(
            f"{ns}_batch_lines", "Lines per atomic publish call", buckets=BATCH_BUCKETS, registry=r
        )
        self.publish_seconds = Histogram(
            f"{ns}_publish_seconds", "Redis round trip of one poll's publish calls", buckets=LAG_BUCKETS, registry=r
        )
        self.lag_seconds = Histogram(
            f"{ns}_produce_to_publish_seconds",
            "Kafka record timestamp to publish in Redis (oldest and newest record of each partition batch)",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            f"{ns}_consumer_lag", "Records behind the partition's high watermark", ["topic", "partition"], registry=r
        )
        self.partitions = Gauge(f"{ns}_assigned_partitions", "Partitions this process reads", registry=r)
        self.redis_up = Gauge(f"{ns}_redis_up", "1 while the last Redis call succeeded", registry=r)
        self.redis_reconnects = Counter(f"{ns}_redis_reconnects", "Recoveries after Redis was unreachable", registry=r)
        self.redis_errors = Counter(f"{ns}_redis_errors", "Failed Redis calls (each retried)", registry=r)
        self.kafka_up = Gauge(f"{ns}_kafka_up", "1 while brokers answer metadata requests", registry=r)
        self.kafka_reconnects = Counter(
            f"{ns}_kafka_reconnects", "Recoveries after Kafka stopped answering", registry=r
        )
        self.offset_resets = Counter(
            f"{ns}_offset_resets",
            "Partitions whose log started over (position past its end, no offset committed): republished",
            registry=r,
        )
        self.log_truncations = Counter(
            f"{ns}_log_truncations",
            "Partitions whose log was truncated (position past its end, offset committed): resumed without a replay",
            registry=r,
        )
        self.truncated_offsets = Counter(
            f"{ns}_truncated_offsets", "Published offsets a truncated log no longer holds", registry=r
        )
        self.unacked_publishes = Counter(
            f"{ns}_unacked_publishes",
            "Publish steps no replica acknowledged within redis.replica_ack_timeout (their Kafka offsets are "
            "committed once a later step is acknowledged)",
            registry=r,
        )
        self.checkpoint_fallbacks = Counter(
            f"{ns}_checkpoint_fallbacks",
            "Partitions resumed at the offset committed to Kafka because Redis had lost their checkpoint",
            registry=r,
        )

    def count_errors(self, errors: Tally[str]) -> None:
        for kind, n in errors.items():
            self.decode_errors.labels(kind).inc(n)

    def record(self, work: Work, skipped: int) -> None:
        """Count one published poll's work."""
        now = time.time()
        for topic, n in work.messages_in.items():
            self.messages_in.labels(topic).inc(n)
            self.bytes_in.labels(topic).inc(work.bytes_in[topic])
            self.lines_in.labels(topic).inc(work.lines_in[topic])
        lines, size = work.lines_out()
        for stream, n in lines.items():
            self.lines_out.labels(stream).inc(n)
            self.bytes_out.labels(stream).inc(size[stream])
        for batches, _ in work.calls:
            self.batch_lines.observe(sum(len(b.lines) for b in batches))
        for _, _, oldest, newest in work.spans.values():
            self.lag_seconds.observe(max(0.0, now - oldest))
            self.lag_seconds.observe(max(0.0, now - newest))
        if skipped:
            self.skipped.inc(skipped)
        if work.errors:
            self.count_errors(work.errors)
