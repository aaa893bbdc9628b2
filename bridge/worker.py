"""Publishing on a thread of its own, so Redis's time overlaps the next poll.

The consume loop hands each poll's work to `PublishWorker.submit`; the worker publishes
works strictly in the order given (a queue of depth one: the loop is at most one poll
ahead of the works in flight). With a `StepPipe` (one Redis node, no WAIT for
replicas) up to two works are in flight: the next one is sent behind the previous one on
the same connection before that one's answer is read, so Redis always has a step to run
while this thread waits for the GIL and packs the next. A work that lowers checkpoints
(`Work.resets`) goes alone, through `publish`, once nothing is in flight.

When a publish fails, the worker stops publishing: that work and every work handed over
after it (including one sent behind it) are kept, unpublished, for the loop to take back
with `take_failed` and rewind their partitions. Redis skipping offsets it already
recorded makes this safe: a work sent behind a failed one may have been published (its
lines are then skipped when read again), but never over a hole, since the publish script
refuses a call whose predecessor for the same partition did not record its offset
(wire.PublishPipe). The same makes the overlap safe across rebalances: a work published
after its partition moved to another process doubles nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from bridge.batch import Call, Work
from bridge.redislink import REDIS_ERRORS

log = logging.getLogger(__name__)

IN_FLIGHT = 2  # works sent and not yet answered: the one being answered, and the next behind it


class StepPipe(Protocol):
    """Publish steps sent one behind another, answered in order (wire.PublishPipe)."""

    def send(self, calls: Sequence[Call]) -> None: ...

    def receive(self) -> tuple[int, int]: ...

    def drop(self) -> None: ...


class PublishWorker:
    """One thread publishing works in order; failures are handed back, never dropped."""

    def __init__(
        self,
        publish: Callable[[Work], int],
        on_published: Callable[[Work, int, float], None],
        pipe: StepPipe | None = None,
    ) -> None:
        self.publish = publish
        self.on_published = on_published
        self.pipe = pipe
        self.queue: queue.Queue[Work | None] = queue.Queue(maxsize=1)
        self.error: Exception | None = None
        self.failed: list[Work] = []
        self.lock = threading.Lock()
        self.in_flight: deque[tuple[Work, float]] = deque()  # sent through the pipe, oldest first
        self.thread = threading.Thread(target=self._run, name="bridge-publish", daemon=True)
        self.thread.start()

    def submit(self, work: Work) -> bool:
        """Queue `work` (waiting while the previous one is still in the queue); False when
        a publish has failed and not been taken back yet: the caller keeps `work`."""
        if self.error is not None:
            return False
        self.queue.put(work)
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted work is published or failed; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.queue.all_tasks_done:
            while self.queue.unfinished_tasks:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.queue.all_tasks_done.wait(left)
        return True

    def take_failed(self) -> tuple[Exception | None, list[Work]]:
        """After a failure: the error and the unpublished works, oldest first; publishing
        resumes with the next submit."""
        self.flush()
        with self.lock:
            error, failed = self.error, self.failed
            self.error, self.failed = None, []
        return error, failed

    def close(self, timeout: float) -> bool:
        """Publish what is queued (within `timeout`), then end the thread."""
        done = self.flush(timeout)
        self.queue.put(None)
        self.thread.join(1.0)
        return done and self.error is None

    def _run(self) -> None:
        while True:
            if self.in_flight:
                try:
                    work = self.queue.get_nowait()
                except queue.Empty:  # nothing to send behind: wait for the oldest answer
                    self._answer()
                    continue
            else:
                work = self.queue.get()
            if work is None:
                while self.in_flight:
                    self._answer()
                self.queue.task_done()
                return
            if self.error is not None:
                self._fail([work])
            elif self.pipe is None or work.resets:
                while self.in_flight:
                    self._answer()
                self._publish(work)
            else:
                # Sent before the previous work's answer is read, on the same connection:
                # Redis runs it right after that one, with no gap for this thread to get
                # the GIL back and pack it. If the previous one failed, the script refuses
                # this one's calls for the same partitions (wire.PublishPipe) and the
                # answer marks it failed too, so a hole can never hide under its offsets.
                self._send(work)
                if len(self.in_flight) >= IN_FLIGHT:
                    self._answer()

    def _publish(self, work: Work) -> None:
        started = time.monotonic()
        try:
            skipped = self.publish(work)
        except Exception as exc:  # noqa: BLE001 (a bug too is handed back: no dead thread)
            self._failed(exc, [work])
            return
        self._done(work, skipped, started)

    def _send(self, work: Work) -> None:
        assert self.pipe is not None
        try:
            self.pipe.send(work.calls)
        except Exception as exc:  # noqa: BLE001 (a bug too is handed back: no dead thread)
            self._failed(exc, [*(w for w, _ in self.in_flight), work])
            return
        self.in_flight.append((work, time.monotonic()))

    def _answer(self) -> None:
        assert self.pipe is not None
        work, started = self.in_flight.popleft()
        try:
            _, skipped = self.pipe.receive()
        except Exception as exc:  # noqa: BLE001 (a bug too is handed back: no dead thread)
            self._failed(exc, [work, *(w for w, _ in self.in_flight)])
            return
        self._done(work, skipped, started)

    def _done(self, work: Work, skipped: int, started: float) -> None:
        try:
            self.on_published(work, skipped, time.monotonic() - started)
        except Exception:  # a bookkeeping bug must not stop the publishing
            log.exception("recording a published batch failed")
        finally:
            self.queue.task_done()

    def _failed(self, exc: Exception, works: list[Work]) -> None:
        """`works` (oldest first) were not published, or not surely: every one sent and
        unanswered is given up with them. An error that is not Redis's is a bug: logged
        with its traceback, and handed back the same way (the bridge pauses, is not ready,
        and tries again), never a thread that dies while the consume loop waits on it."""
        if not isinstance(exc, REDIS_ERRORS):
            log.error("publishing failed on an unexpected error", exc_info=exc)
        if self.pipe is not None:
            self.pipe.drop()
        self.in_flight.clear()
        with self.lock:
            self.error = exc
        self._fail(works)

    def _fail(self, works: list[Work]) -> None:
        with self.lock:
            self.failed += works
        for _ in works:
            self.queue.task_done()
