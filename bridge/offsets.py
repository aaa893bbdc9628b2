"""Kafka offset commits: the newest published offset of each partition, told to Kafka.

Redis decides where a partition resumes (bridge.positions, wire.Publisher's checkpoint).
The offsets committed here serve Kafka's lag tools and are Redis's stand-in: where Redis
has lost a partition's checkpoint (a restart without persistence, FLUSHALL), the
partition resumes at its committed offset instead of replaying the topic; and whether
Kafka still holds a committed offset tells a truncated log from one that started over.

So they follow Redis closely. Each housekeeping turn sends, asynchronously, the next
offset of every partition published (or whose checkpoint was lowered) since its last
commit, and only those: an offset Kafka lost with a broker's data is never sent again on
behalf of a partition that published nothing since. A commit that fails is sent again
the next turn (unless a newer one replaced it); shutdown commits synchronously. A commit
lost anyway costs, only if Redis loses its checkpoint too, the lines published since the
previous commit: published again.

With replicas to wait for (`redis.min_replicas_acked`), a published offset is due only
once a replica has acknowledged its publish step (or a later one: WAIT covers every
earlier write of the connection; so does one the bridge sends between steps, for a
partition that has gone quiet). Until then it waits in `unacked`, and a Redis failure
forgets it: the partition resumes from what the (maybe new) primary holds, and what it
publishes from there is committed as it is acknowledged. Kafka's stand-in is then never
ahead of what a promoted replica can hold.
"""

from __future__ import annotations

import logging
import threading

from bridge.kafkaclient import KafkaClient, KafkaFailure, TopicPartition

log = logging.getLogger(__name__)

Key = tuple[str, int]  # (topic, partition)


class OffsetCommits:
    """Offsets waiting to be committed, and the commits (off unless `bridge.commit_offsets`).

    `published` and `moved` are called on the publishing thread, the commits on the
    consume loop's thread (where the Kafka client also runs the commit callbacks)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.lock = threading.Lock()
        self.due: dict[Key, int] = {}  # partition -> next offset, changed since its last commit
        self.unacked: dict[Key, int] = {}  # partition -> next offset, published but not acknowledged by a replica

    def published(self, spans: dict[Key, tuple[int, int, float, float]], acked: bool = True) -> None:
        """A work was published: its partitions' newest offsets, due once a replica
        acknowledged it (`acked`; always, with no replica to wait for)."""
        with self.lock:
            for key, (_, last, _, _) in spans.items():
                self.unacked[key] = last + 1
            if acked:
                self.due.update(self.unacked)
                self.unacked.clear()

    def unacked_now(self) -> dict[Key, int]:
        """What waits for a replica, as it is now (hand it to `acked` after a WAIT)."""
        with self.lock:
            return dict(self.unacked)

    def acked(self, held: dict[Key, int]) -> None:
        """A WAIT sent after `held` was taken succeeded: those offsets are due, unless a
        newer step of the partition (not covered) replaced them meanwhile."""
        with self.lock:
            for key, nxt in held.items():
                if self.unacked.get(key) == nxt:
                    del self.unacked[key]
                    self.due[key] = nxt

    def forget_unacked(self) -> None:
        """Redis failed: what no replica acknowledged may be gone with the primary."""
        with self.lock:
            self.unacked.clear()

    def moved(self, key: Key, nxt: int) -> None:
        """A partition's Redis checkpoint was lowered: `nxt` is its next offset now."""
        with self.lock:
            self.due[key] = nxt
            self.unacked.pop(key, None)

    def commit(self, consumer: KafkaClient) -> None:
        """Send what is due, without waiting for the answer (every housekeeping turn)."""
        offsets = self._take(consumer)
        if not offsets:
            return
        try:
            consumer.commit_async(offsets, self._failed)
        except KafkaFailure as exc:
            self._failed(offsets, exc)

    def commit_now(self, consumer: KafkaClient, timeout_ms: int) -> None:
        """Commit what is due and wait for the answer (at shutdown)."""
        offsets = self._take(consumer)
        if not offsets:
            return
        try:
            consumer.commit(offsets, timeout_ms)
        except KafkaFailure as exc:
            log.warning("Kafka offset commit at shutdown failed (Redis offsets still decide): %s", exc)

    def _take(self, consumer: KafkaClient) -> dict[TopicPartition, int]:
        """What is due, for partitions this process still holds (a partition that moved
        on is its new owner's to commit)."""
        if not self.enabled:
            return {}
        assigned = consumer.assignment()
        with self.lock:
            due, self.due = self.due, {}
        return {tp: nxt for key, nxt in due.items() if (tp := TopicPartition(*key)) in assigned}

    def _failed(self, offsets: dict[TopicPartition, int], exc: Exception) -> None:
        log.debug("Kafka offset commit failed (sent again next turn): %s", exc)
        with self.lock:
            for tp, nxt in offsets.items():
                self.due.setdefault((tp.topic, tp.partition), nxt)
