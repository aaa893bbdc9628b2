"""Where a partition goes on when its position is past the end of its log, and which
offsets are committed to Kafka (the stand-in for a checkpoint Redis lost)."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.kafkaclient import KafkaFailure, TopicPartition
from bridge.offsets import OffsetCommits
from bridge.positions import STARTED_OVER, TRUNCATED, resume_past_end

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "position, start, end, committed, commits, expected",
    [
        # commits on, none left in Kafka: the topic was recreated or the broker lost its data
        (100, 0, 50, None, True, (0, STARTED_OVER)),
        # the committed offset survived the truncation: past the new end too -> the new end
        (100, 0, 90, 100, True, (90, TRUNCATED)),
        # committed within the log (the truncation went back further than the last commit)
        (100, 10, 90, 80, True, (80, TRUNCATED)),
        (100, 10, 90, 90, True, (90, TRUNCATED)),
        # committed below the log's start (retention took it): never replay the log
        (100, 10, 90, 5, True, (90, TRUNCATED)),
        # commits off: a started-over log cannot be told from a truncated one; no replay
        (100, 0, 50, None, False, (50, TRUNCATED)),
    ],
)
def test_resume_past_end(
    position: int, start: int, end: int, committed: int | None, commits: bool, expected: tuple[int, str]
) -> None:
    assert resume_past_end(position, start, end, committed, commits) == expected


class FakeConsumer:
    """What OffsetCommits uses of a bridge.kafkaclient.KafkaClient: assignment, commit_async, commit."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.sent: list[dict[TopicPartition, int]] = []
        self.callbacks: list[Any] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def commit_async(self, offsets: dict, failed: Any) -> None:
        self.sent.append(dict(offsets))
        self.callbacks.append((offsets, failed))

    def commit(self, offsets: dict, timeout_ms: int) -> None:
        self.sent.append(dict(offsets))


A, B = TopicPartition("a", 0), TopicPartition("b", 0)


def test_only_partitions_changed_since_their_last_commit_are_committed() -> None:
    # a partition whose log (and committed offset) a broker lost must not get its old
    # offset back because another partition published: that would make it look truncated
    consumer = FakeConsumer({A, B})
    commits = OffsetCommits(enabled=True)
    commits.published({("a", 0): (0, 9, 0.0, 0.0), ("b", 0): (0, 4, 0.0, 0.0)})
    commits.commit(consumer)
    commits.published({("b", 0): (5, 7, 0.0, 0.0)})
    commits.commit(consumer)
    commits.commit(consumer)  # nothing new: nothing sent
    commits.moved(("a", 0), 3)  # a checkpoint lowered
    commits.commit_now(consumer, 1000)
    assert consumer.sent == [{A: 10, B: 5}, {B: 8}, {A: 3}]


def test_a_failed_commit_is_sent_again_unless_a_newer_one_replaced_it() -> None:
    consumer = FakeConsumer({A, B})
    commits = OffsetCommits(enabled=True)
    commits.published({("a", 0): (0, 9, 0.0, 0.0), ("b", 0): (0, 4, 0.0, 0.0)})
    commits.commit(consumer)
    commits.published({("b", 0): (5, 7, 0.0, 0.0)})
    offsets, failed = consumer.callbacks[0]
    failed(offsets, KafkaFailure("coordinator gone"))
    commits.commit(consumer)
    assert consumer.sent[-1] == {A: 10, B: 8}


def test_partitions_no_longer_held_and_disabled_commits_send_nothing() -> None:
    consumer = FakeConsumer({B})
    commits = OffsetCommits(enabled=True)
    commits.published({("a", 0): (0, 9, 0.0, 0.0)})
    commits.commit(consumer)
    off = OffsetCommits(enabled=False)
    off.published({("b", 0): (0, 9, 0.0, 0.0)})
    off.commit(consumer)
    off.commit_now(consumer, 1000)
    assert consumer.sent == []


def test_offsets_no_replica_acknowledged_are_committed_with_the_next_acknowledged_step() -> None:
    # redis.min_replicas_acked: Kafka's stand-in must never be ahead of what a replica holds
    consumer = FakeConsumer({A, B})
    commits = OffsetCommits(enabled=True)
    commits.published({("a", 0): (0, 9, 0.0, 0.0)}, acked=False)
    commits.commit(consumer)  # nothing a replica has: nothing sent
    commits.published({("b", 0): (0, 4, 0.0, 0.0)}, acked=True)  # WAIT covers every earlier write
    commits.commit(consumer)
    commits.published({("a", 0): (10, 12, 0.0, 0.0)}, acked=False)
    commits.forget_unacked()  # Redis failed: the primary that had it may be gone
    commits.published({("b", 0): (5, 6, 0.0, 0.0)}, acked=True)
    commits.commit(consumer)
    commits.published({("a", 0): (10, 14, 0.0, 0.0)}, acked=False)
    commits.moved(("a", 0), 3)  # a checkpoint lowered: what was held for it is moot
    commits.commit_now(consumer, 1000)
    commits.published({("a", 0): (3, 5, 0.0, 0.0)}, acked=False)
    held = commits.unacked_now()  # then a WAIT between steps succeeds...
    commits.published({("b", 0): (7, 8, 0.0, 0.0)}, acked=False)  # ...sent before this step
    commits.acked(held)
    commits.commit(consumer)
    assert consumer.sent == [{A: 10, B: 5}, {B: 7}, {A: 3}, {A: 6}]
