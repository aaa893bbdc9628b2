"""The consume-and-publish loop: poll Kafka, decode, publish each partition's batch
atomically together with its offset (Redis decides what was already published)."""

from __future__ import annotations

import logging
import threading

import redis
from kafka import KafkaConsumer, TopicPartition

from bridge.decode import split_lines
from bridge.route import whole_topic_stream
from settings import Settings
from wire import Checkpoint, Keys, Line, Publisher, StreamBatch, encode_line

log = logging.getLogger(__name__)


class Bridge:
    """One bridge process: a consumer with manually assigned partitions."""

    def __init__(self, settings: Settings, stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        self.keys = Keys(settings.redis.prefix)
        self.redis = redis.Redis.from_url(settings.redis.url, client_name="tailgate-bridge")
        self.publisher = Publisher(self.redis, self.keys, settings.redis.history_maxlen)
        k = settings.kafka
        self.consumer = KafkaConsumer(
            bootstrap_servers=k.bootstrap.split(","),
            client_id=k.client_id,
            enable_auto_commit=False,
            fetch_max_wait_ms=k.fetch_max_wait_ms,
            max_poll_records=k.max_poll_records,
        )

    def assign(self) -> list[TopicPartition]:
        """Assign this instance's share of every configured topic's partitions and seek
        each to just after the offset Redis last recorded for it."""
        b = self.settings.bridge
        parts: list[TopicPartition] = []
        for topic in b.topics:
            whole_topic_stream(topic)  # validates the topic name
            ids = self.consumer.partitions_for_topic(topic) or set()
            parts += [TopicPartition(topic, p) for p in sorted(ids) if p % b.instances == b.instance]
        self.consumer.assign(parts)
        recorded = self.publisher.offsets(b.group_id)
        for tp in parts:
            last = recorded.get(f"{tp.topic}:{tp.partition}")
            if last is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, last + 1)
        return parts

    def run(self) -> None:
        parts = self.assign()
        log.info("bridge consuming %d partitions of %s", len(parts), ", ".join(self.settings.bridge.topics))
        max_line = self.settings.bridge.max_line_bytes
        group = self.settings.bridge.group_id
        while not self.stop.is_set():
            polled = self.consumer.poll(timeout_ms=200)
            calls = []
            for tp, records in polled.items():
                stream = whole_topic_stream(tp.topic)
                batch = StreamBatch(stream)
                for rec in records:
                    ts = rec.timestamp / 1000.0
                    for text in split_lines(rec.value, max_line):
                        batch.lines.append((rec.offset, encode_line(Line(ts, text))))
                calls.append(([batch], Checkpoint(group, tp.topic, tp.partition)))
            if calls:
                self.publisher.publish_many(calls)
        self.consumer.close()
