"""The publishing thread with a second step in flight: the next work is sent before the
previous one's answer is read, and a failure hands back every work sent behind it."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
import redis

from bridge.batch import Call, Work
from bridge.worker import PublishWorker
from wire import Checkpoint, StreamBatch


class FakePipe:
    """Records sends and answers in order; the first send waits for `go`, so that the
    test can queue the next work before the first is answered."""

    def __init__(self, failing: int | None = None) -> None:
        self.events: list[str] = []
        self.go = threading.Event()
        self.failing = failing  # the step whose answer is an error
        self.steps: list[int] = []
        self.dropped = 0

    def send(self, calls: Sequence[Call]) -> None:
        assert self.go.wait(5)
        step = calls[0][0][0].lines[0][0]
        self.steps.append(step)
        self.events.append(f"send {step}")

    def receive(self) -> tuple[int, int]:
        step = self.steps.pop(0)
        self.events.append(f"answer {step}")
        if step == self.failing:
            raise redis.ResponseError("OOM command not allowed")
        return 1, 0

    def drop(self) -> None:
        self.dropped += 1
        self.steps.clear()


def _work(step: int) -> Work:
    return Work(calls=[([StreamBatch("kafka:t", [(step, b'"text":"x"')])], Checkpoint("g", "t", 0))])


def _never(work: Work) -> int:
    raise AssertionError("a work without resets goes through the pipe")


@pytest.mark.unit
def test_the_next_work_is_sent_before_the_previous_answer_is_read() -> None:
    pipe = FakePipe()
    published: list[int] = []
    worker = PublishWorker(_never, lambda w, s, t: published.append(w.calls[0][0][0].lines[0][0]), pipe)
    worker.submit(_work(0))
    worker.submit(_work(1))  # queued while the first is being sent
    pipe.go.set()
    worker.submit(_work(2))
    assert worker.flush(5)
    assert pipe.events[:2] == ["send 0", "send 1"]
    assert published == [0, 1, 2] and sorted(pipe.events) == sorted(
        f"{e} {s}" for e in ("send", "answer") for s in range(3)
    )
    assert worker.close(1)


@pytest.mark.unit
def test_a_failed_answer_hands_back_the_work_sent_behind_it() -> None:
    pipe = FakePipe(failing=0)
    published: list[Work] = []
    worker = PublishWorker(_never, lambda w, s, t: published.append(w), pipe)
    first, second = _work(0), _work(1)
    worker.submit(first)
    worker.submit(second)
    pipe.go.set()
    assert worker.flush(5)
    assert pipe.events == ["send 0", "send 1", "answer 0"] and pipe.dropped == 1
    assert not worker.submit(_work(2))  # held until the loop takes the failed works back
    error, failed = worker.take_failed()
    assert isinstance(error, redis.ResponseError) and failed == [first, second] and published == []
    assert worker.close(1)


@pytest.mark.unit
@pytest.mark.parametrize("through_pipe", [True, False])
def test_a_bug_in_a_publish_step_is_handed_back_and_the_thread_goes_on(through_pipe: bool) -> None:
    calls: list[int] = []

    def publish(work: Work) -> int:
        calls.append(work.calls[0][0][0].lines[0][0])
        if len(calls) == 1:
            raise ValueError("a fragment with a newline")
        return 0

    class BuggyPipe(FakePipe):
        def send(self, calls_: Sequence[Call]) -> None:
            self.go.set()
            super().send(calls_)
            if len(self.steps) == 1 and self.events == ["send 0"]:
                raise ValueError("a fragment with a newline")

    published: list[int] = []
    pipe = BuggyPipe() if through_pipe else None
    worker = PublishWorker(publish, lambda w, s, t: published.append(w.calls[0][0][0].lines[0][0]), pipe)
    worker.submit(_work(0))
    assert worker.flush(5), "the publishing thread died"
    error, failed = worker.take_failed()
    assert isinstance(error, ValueError) and [w.calls[0][0][0].lines[0][0] for w in failed] == [0]
    assert worker.submit(_work(0)) and worker.flush(5)
    assert published == [0] and worker.thread.is_alive()
    assert worker.close(5)
