"""Where each partition resumes: Redis decides; Kafka's committed offsets stand in when
Redis lost its checkpoint; a position past the end of the log never replays the log.

A partition that arrives (at start, after a group rebalance, or when the static split
finds it) is paused until its position is known, then resumed:

1. just after the newest offset the publish step recorded in Redis; else
2. at the offset committed to Kafka (bridge.offsets, with `bridge.commit_offsets`): Redis
   lost its checkpoint (a restart without persistence, FLUSHALL, eviction) and what comes
   before that offset is published already. Logged and counted (`checkpoint_fallbacks`);
3. else at `start_from` (earliest or latest): a partition nobody has published yet.

So no record is consumed from a position that Redis (or Kafka's copy of it) did not
choose, and a rebalance can neither skip nor double a line.

A position past the end of a partition's log shows as offsets going backwards: Kafka
answers "out of range" and the consumer restarts at the log's start (bridge.health does
the same for brokers that answer with an empty fetch instead). Whether Kafka still holds
the group's committed offset tells why:

* it does not: the log started over (the topic deleted and recreated, or a broker that
  lost its data: either takes the committed offsets with it). Every record in the new
  log is new: republished from its start (`offset_resets`).
* it does: the log was truncated (its end moved backwards after a leader change). What
  is below the new end was published before: the partition resumes at the committed
  offset if that lies within the log, else at the new end; counted as a gap
  (`log_truncations`, and in `truncated_offsets` the published offsets the log no longer
  holds). Records written after the truncation below the resume offset are skipped: no
  offset or timestamp says where the truncation was.
* commits off: the two cannot be told apart; taken as a truncation, since replaying a
  whole partition into live views is the worse mistake.

Either way the Redis checkpoint is lowered to just before the resume offset, so new
records are not skipped as old ones. The lowering is handed to the publishing thread
with the next work (so it follows everything published before) and kept until done.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bridge.kafkaclient import KafkaClient, KafkaFailure, TopicPartition
from bridge.metrics import BridgeMetrics
from wire import Checkpoint, Publisher

log = logging.getLogger(__name__)

START_FROM = ("earliest", "latest")
COMMITTED_TIMEOUT_MS = 3000  # reading committed offsets; the loop retries after a failure
STARTED_OVER, TRUNCATED = "started over", "truncated"


def resume_past_end(
    position: int, start: int, end: int, committed_offset: int | None, commits: bool
) -> tuple[int, str]:
    """Where a partition goes on when `position` is past the `end` of its log (whose
    first record is at `start`), and why: (offset, STARTED_OVER or TRUNCATED)."""
    if commits and committed_offset is None:
        return start, STARTED_OVER
    if committed_offset is not None and start <= committed_offset <= end:
        return committed_offset, TRUNCATED
    return end, TRUNCATED


class Positions:
    """Per-partition bookkeeping: pending seeks, the next offset each should deliver,
    and Redis checkpoints waiting to be lowered."""

    def __init__(
        self,
        consumer: KafkaClient,
        publisher: Publisher,
        group: str,
        start_from: str,
        metrics: BridgeMetrics,
        commits: bool,
    ) -> None:
        """`commits`: offsets are committed to Kafka (bridge.commit_offsets), so the
        group's committed offsets can stand in for Redis's."""
        self.check_start_from(start_from)
        self.consumer = consumer
        self.publisher = publisher
        self.group = group
        self.start_from = start_from
        self.metrics = metrics
        self.commits = commits
        self.pending: set[TopicPartition] = set()
        self.expected: dict[TopicPartition, int] = {}
        self.rechecks: set[TopicPartition] = set()
        self.lowered: dict[TopicPartition, int] = {}  # checkpoints to lower, not handed over yet

    @staticmethod
    def check_start_from(start_from: str) -> None:
        if start_from not in START_FROM:
            raise ValueError(f"bridge.start_from must be earliest or latest, not {start_from!r}")

    def added(self, parts: Iterable[TopicPartition]) -> None:
        """New partitions: hold them until `resolve` has read their positions."""
        parts = set(parts)
        if parts:
            self.consumer.pause(parts)
            self.pending |= parts

    def removed(self, parts: Iterable[TopicPartition]) -> None:
        for tp in parts:
            self.pending.discard(tp)
            self.rechecks.discard(tp)
            self.expected.pop(tp, None)
            self.lowered.pop(tp, None)

    def recheck(self, parts: Iterable[TopicPartition]) -> None:
        """Partitions whose Redis position must be read again before they go on (after a
        Redis failure or reconnect, Redis may hold less than what was published)."""
        parts = set(parts) - self.pending
        if parts:
            self.consumer.pause(parts)
            self.rechecks |= parts

    def resolve(self) -> list[TopicPartition]:
        """Seek every pending partition to its position and resume it.

        Raises redis.RedisError when Redis cannot be read, KafkaFailure when the committed
        offsets standing in for missing Redis ones cannot: the partitions stay paused.
        Returns the partitions resumed.
        """
        if not self.pending and not self.rechecks:
            return []
        recorded = self.publisher.offsets(self.group)
        assigned = self.consumer.assignment()
        ready = [tp for tp in self.pending if tp in assigned]
        missing = [tp for tp in ready if _field(tp) not in recorded]
        fallback = self.consumer.committed(missing, COMMITTED_TIMEOUT_MS) if self.commits else {}
        for tp in ready:
            last = recorded.get(_field(tp))
            if last is not None:
                self.consumer.seek(tp, last + 1)
                self.expected[tp] = last + 1
                log.info("%s:%d resumes after offset %d (recorded in Redis)", tp.topic, tp.partition, last)
            elif tp in fallback:
                self.consumer.seek(tp, fallback[tp])
                self.expected[tp] = fallback[tp]
                self.metrics.checkpoint_fallbacks.inc()
                log.warning(
                    "%s:%d: Redis holds no offset for it (Redis lost its data: restarted without persistence, "
                    "flushed or evicted); resuming at offset %d, committed to Kafka, instead of replaying it",
                    tp.topic,
                    tp.partition,
                    fallback[tp],
                )
            else:
                if self.start_from == "earliest":
                    self.consumer.seek_to_beginning(tp)
                else:
                    self.consumer.seek_to_end(tp)
                self.expected.pop(tp, None)
                log.info("%s:%d resumes at the %s offset", tp.topic, tp.partition, self.start_from)
        checked = [tp for tp in self.rechecks if tp in assigned and tp not in self.pending]
        for tp in checked:
            last = recorded.get(_field(tp))
            nxt = self.expected.get(tp)
            if tp in self.lowered or nxt is None:
                continue  # its checkpoint is about to be lowered, or it has no position yet
            if last is None:
                # nothing published yet, or Redis lost everything: go on from here rather
                # than replaying the topic
                log.info("%s:%d: Redis holds no offset for it; going on from offset %d", *tp, nxt)
            elif last + 1 != nxt:
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
            self.consumer.resume([*ready, *checked])
        return ready + checked

    def consumed(self, tp: TopicPartition, first: int, last: int) -> int | None:
        """Note a batch of offsets first..last. When they went backwards (the position was
        past the end of the log and the consumer went back to its start), decide where
        the partition goes on and return the first offset of the batch to publish (maybe
        beyond it); None: publish all of it."""
        expected = self.expected.get(tp)
        self.expected[tp] = last + 1
        if expected is None or first >= expected:
            return None
        end = max(self.consumer.highwater(tp) or 0, last + 1)
        resume = self._past_end(tp, expected, first, end)
        if resume is None:  # undecided: go back and meet the end of the log again
            self.consumer.seek(tp, expected)
            self.expected[tp] = expected
            return last + 1
        if resume > last + 1:
            self.consumer.seek(tp, resume)
        self.expected[tp] = max(resume, last + 1)
        return resume

    def _past_end(self, tp: TopicPartition, position: int, start: int, end: int) -> int | None:
        """Decide, log and count; schedule the Redis checkpoint's lowering. Returns the
        offset to resume at, or None when Kafka's committed offset could not be read."""
        try:
            found = self.consumer.committed([tp], COMMITTED_TIMEOUT_MS).get(tp) if self.commits else None
        except KafkaFailure as exc:
            log.warning(
                "%s:%d: position %d is past the end of the log (%d) and Kafka's committed offset could not be "
                "read (%s); trying again",
                *tp,
                position,
                end,
                exc,
            )
            return None
        resume, why = resume_past_end(position, start, end, found, self.commits)
        if why == STARTED_OVER:
            self.metrics.offset_resets.inc()
            log.warning(
                "%s:%d: the log started over (position %d is past its end %d and Kafka holds no committed "
                "offset: topic recreated, or a broker that lost its data); republishing it from its start",
                *tp,
                position,
                end,
            )
        else:
            self.metrics.log_truncations.inc()
            self.metrics.truncated_offsets.inc(position - end)
            log.warning(
                "%s:%d: the log was truncated (position %d is past its end %d; committed offset %s): resuming at "
                "offset %d without replaying the partition; %d published offsets are no longer in the log",
                *tp,
                position,
                end,
                found,
                resume,
                position - end,
            )
        self.lowered[tp] = resume - 1
        return resume

    def take_lowered(self) -> dict[TopicPartition, int]:
        """The checkpoints to lower, handed to the next work (bridge.batch.Work.resets)."""
        taken, self.lowered = self.lowered, {}
        return taken

    def keep_lowered(self, lowered: dict[TopicPartition, int]) -> None:
        """Checkpoint lowerings of a work that failed before doing them: do them later."""
        assigned = self.consumer.assignment()
        for tp, last in lowered.items():
            if tp in assigned:
                self.lowered.setdefault(tp, last)

    def rewind(self, tp: TopicPartition, offset: int) -> None:
        """Make `offset` the partition's next record again (its batch was not published)."""
        if tp in self.consumer.assignment():
            self.consumer.seek(tp, offset)
            self.expected[tp] = offset

    def reset(self, tp: TopicPartition, last: int) -> None:
        """Lower the Redis checkpoint of a partition (on the publishing thread); a
        negative `last` forgets it."""
        self.publisher.reset_offset(Checkpoint(self.group, tp.topic, tp.partition), last)


def _field(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"
