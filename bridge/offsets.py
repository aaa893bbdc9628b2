"""Kafka offset commits: the newest published offset of each partition, told to Kafka.

Invariant: Redis decides where a partition resumes (bridge.positions, wire.Publisher's
checkpoint); the offsets committed here exist only so Kafka's lag tools see the group's
progress. A failed or skipped commit therefore loses and doubles nothing, and is logged
at debug level only. Commits are sent asynchronously, at most once per housekeeping turn
and once more at shutdown, and only for partitions this process still holds.
"""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

log = logging.getLogger(__name__)


class OffsetCommits:
    """What was published since the last commit, and the commit itself (off unless
    `bridge.commit_offsets`)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.published_next: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset
        self.dirty = False  # something was published since the last commit

    def published(self, spans: dict[tuple[str, int], tuple[int, int, float, float]]) -> None:
        """A work was published (on the publishing thread): its partitions' newest offsets."""
        for key, (_, last, _, _) in spans.items():
            self.published_next[key] = last + 1
        self.dirty = True

    def commit(self, consumer: KafkaConsumer) -> None:
        """Send a commit of the assigned partitions' published offsets, when due."""
        if self.enabled and self.dirty:
            self.dirty = not commit(consumer, self.published_next)


def commit(consumer: KafkaConsumer, published_next: dict[tuple[str, int], int]) -> bool:
    """Commit the published offsets of assigned partitions; True if a commit was sent."""
    assigned = consumer.assignment()
    offsets = {
        tp: OffsetAndMetadata(nxt, "", -1)
        for (topic, partition), nxt in dict(published_next).items()
        if (tp := TopicPartition(topic, partition)) in assigned
    }
    if not offsets:
        return False
    try:
        consumer.commit_async(offsets=offsets, callback=_commit_done)
    except KafkaError as exc:
        log.debug("Kafka offset commit not sent: %s", exc)
    return True


def _commit_done(offsets: Any, response: Any) -> None:
    if isinstance(response, Exception):
        log.debug("Kafka offset commit failed (Redis offsets still decide): %s", response)
