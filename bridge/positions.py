"""Where each partition resumes: Redis decides, not Kafka.

A partition that arrives (at start, after a group rebalance, or when the static split
finds it) is paused until its position has been read from Redis: just after the newest
offset recorded by the publish step, or `start_from` (earliest or latest) when nothing is
recorded yet. Only then is it resumed, so no record of it is consumed from a position
Redis did not choose, and a rebalance can neither skip nor double a line.

Positions also notice a partition's log starting over (its offsets go backwards: the
topic was deleted and recreated, or the broker lost its log). Kafka moves the consumer to
the new log's start; the recorded offset is then lowered so the new lines are not skipped
as old ones.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kafka import KafkaConsumer, TopicPartition

from wire import Checkpoint, Publisher

log = logging.getLogger(__name__)

START_FROM = ("earliest", "latest")


class Positions:
    """Per-partition bookkeeping: pending seeks and the next offset each should deliver."""

    def __init__(self, consumer: KafkaConsumer, publisher: Publisher, group: str, start_from: str) -> None:
        self.check_start_from(start_from)
        self.consumer = consumer
        self.publisher = publisher
        self.group = group
        self.start_from = start_from
        self.pending: set[TopicPartition] = set()
        self.expected: dict[TopicPartition, int] = {}
        self.rechecks: set[TopicPartition] = set()

    @staticmethod
    def check_start_from(start_from: str) -> None:
        if start_from not in START_FROM:
            raise ValueError(f"bridge.start_from must be earliest or latest, not {start_from!r}")

    def added(self, parts: Iterable[TopicPartition]) -> None:
        """New partitions: hold them until `resolve` has read their positions from Redis."""
        parts = set(parts)
        if parts:
            self.consumer.pause(*parts)
            self.pending |= parts

    def removed(self, parts: Iterable[TopicPartition]) -> None:
        for tp in parts:
            self.pending.discard(tp)
            self.rechecks.discard(tp)
            self.expected.pop(tp, None)

    def recheck(self, parts: Iterable[TopicPartition]) -> None:
        """Partitions whose Redis position must be read again before they go on (after a
        Redis failure or reconnect, Redis may hold less than what was published)."""
        parts = set(parts) - self.pending
        if parts:
            self.consumer.pause(*parts)
            self.rechecks |= parts

    def resolve(self) -> list[TopicPartition]:
        """Seek every pending partition to its Redis position and resume it.

        Raises redis.RedisError when Redis cannot be read; the partitions stay paused.
        Returns the partitions resumed.
        """
        if not self.pending and not self.rechecks:
            return []
        recorded = self.publisher.offsets(self.group)
        assigned = self.consumer.assignment()
        ready = [tp for tp in self.pending if tp in assigned]
        for tp in ready:
            last = recorded.get(f"{tp.topic}:{tp.partition}")
            if last is not None:
                self.consumer.seek(tp, last + 1)
                self.expected[tp] = last + 1
            elif self.start_from == "earliest":
                self.consumer.seek_to_beginning(tp)
                self.expected.pop(tp, None)
            else:
                self.consumer.seek_to_end(tp)
                self.expected.pop(tp, None)
            log.info(
                "%s:%d resumes %s",
                tp.topic,
                tp.partition,
                f"after offset {last} (recorded in Redis)" if last is not None else f"at the {self.start_from} offset",
            )
        checked = [tp for tp in self.rechecks if tp in assigned and tp not in self.pending]
        for tp in checked:
            last = recorded.get(f"{tp.topic}:{tp.partition}")
            nxt = self.expected.get(tp)
            # Nothing recorded: Redis lost everything; go on from here rather than
            # replaying the whole topic into it.
            if last is not None and nxt is not None and last + 1 != nxt:
                log.warning(
                    "%s:%d: Redis records offset %d but the bridge was at %d (Redis restored from an "
                    "older snapshot, or another instance moved on); resuming after %d",
                    tp.topic,
                    tp.partition,
                    last,
                    nxt,
                    last,
                )
                self.consumer.seek(tp, last + 1)
                self.expected[tp] = last + 1
        self.pending.clear()
        self.rechecks.clear()
        if ready or checked:
            self.consumer.resume(*ready, *checked)
        return ready + checked

    def consumed(self, tp: TopicPartition, first: int, last: int) -> int | None:
        """Note a batch of offsets first..last; returns the offset to reset the Redis
        checkpoint to when the partition's log started over, else None."""
        expected = self.expected.get(tp)
        self.expected[tp] = last + 1
        if expected is not None and first < expected:
            log.warning(
                "%s:%d offsets went back from %d to %d: the partition's log started over "
                "(topic recreated or broker lost its log); republishing from offset %d",
                tp.topic,
                tp.partition,
                expected,
                first,
                first,
            )
            return first - 1
        return None

    def rewind(self, tp: TopicPartition, offset: int, restarted: bool = False) -> None:
        """Make `offset` the partition's next record again (its batch was not published).

        `restarted`: the batch had noticed the log starting over but the Redis checkpoint
        was not lowered yet, so the next delivery must notice it again.
        """
        if tp in self.consumer.assignment():
            self.consumer.seek(tp, offset)
            self.expected[tp] = offset + 1 if restarted else offset

    def reset(self, tp: TopicPartition, last: int) -> None:
        """Lower the Redis checkpoint of a partition whose log started over."""
        self.publisher.reset_offset(Checkpoint(self.group, tp.topic, tp.partition), last)
