"""Publishing on a thread of its own, so Redis's time overlaps the next poll.

The consume loop hands each poll's work to `PublishWorker.submit`; the worker publishes
works strictly in the order given (a queue of depth one: the loop is at most one poll
ahead of Redis). When a publish fails, the worker stops publishing: that work and every
work handed over after it are kept, unpublished, for the loop to take back with
`take_failed` and rewind their partitions. Redis skipping offsets it already recorded
makes the overlap safe across rebalances: a work published after its partition moved
to another process doubles nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from bridge.batch import Work
from bridge.redislink import REDIS_ERRORS

log = logging.getLogger(__name__)


class PublishWorker:
    """One thread publishing works in order; failures are handed back, never dropped."""

    def __init__(self, publish: Callable[[Work], int], on_published: Callable[[Work, int, float], None]) -> None:
        self.publish = publish
        self.on_published = on_published
        self.queue: queue.Queue[Work | None] = queue.Queue(maxsize=1)
        self.error: Exception | None = None
        self.failed: list[Work] = []
        self.lock = threading.Lock()
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
            work = self.queue.get()
            try:
                if work is None:
                    return
                if self.error is not None:
                    with self.lock:
                        self.failed.append(work)
                    continue
                started = time.monotonic()
                try:
                    skipped = self.publish(work)
                except REDIS_ERRORS as exc:
                    with self.lock:
                        self.error = exc
                        self.failed.append(work)
                    continue
                try:
                    self.on_published(work, skipped, time.monotonic() - started)
                except Exception:  # a bookkeeping bug must not stop the publishing
                    log.exception("recording a published batch failed")
            finally:
                self.queue.task_done()
