"""Fair shares of the Salt client's workers: no one user can hold them all.

The Salt client runs at most `salt.workers` calls at once (a LocalClient call blocks a
worker thread for up to twice `salt.timeout` when a minion does not answer; a salt-api
call holds an HTTP connection). A caller, the user a call is made for, holds at most
`salt.max_calls_per_user` of them; the gateway's own calls (the minion list) and calls
with authentication off name no caller and are bounded by the total only. A call that
finds no worker it may take waits: first come, first served among the waiting calls
that may go, so one user's queue never holds back another user's call. A call still
waiting after `salt.queue_timeout` seconds gets `TimeoutError` (the client answers
`unavailable`). A worker is given back when its call has really ended (for LocalClient,
when the thread returns), not when its caller stopped waiting.

Everything runs on the event loop: no locks.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable

Release = Callable[[], None]


class Slots:
    """Admission to `total` workers, at most `per_caller` for any one named caller."""

    def __init__(self, total: int, per_caller: int, queue_timeout: float) -> None:
        self.total = total
        self.per_caller = per_caller
        self.queue_timeout = queue_timeout
        self.busy = 0
        self.held: Counter[str] = Counter()
        self.waiting: deque[tuple[str | None, asyncio.Future[Release]]] = deque()

    def _may_take(self, caller: str | None) -> bool:
        return self.busy < self.total and (caller is None or self.held[caller] < self.per_caller)

    def _take(self, caller: str | None) -> Release:
        self.busy += 1
        if caller is not None:
            self.held[caller] += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self.busy -= 1
            if caller is not None:
                self.held[caller] -= 1
                if self.held[caller] <= 0:
                    del self.held[caller]
            self._wake()

        return release

    def _wake(self) -> None:
        for entry in list(self.waiting):
            if self.busy >= self.total:
                return
            caller, future = entry
            if future.done():
                self.waiting.remove(entry)
            elif self._may_take(caller):
                self.waiting.remove(entry)
                future.set_result(self._take(caller))

    async def acquire(self, caller: str | None) -> Release:
        """A worker for `caller`, as the function that gives it back (call it exactly
        when the work has ended); `TimeoutError` after `queue_timeout` seconds."""
        # Whoever may go now does not jump a queue: every waiting call that could go was
        # woken when the last worker was given back, so those still waiting cannot.
        if self._may_take(caller):
            return self._take(caller)
        entry = (caller, asyncio.get_running_loop().create_future())
        self.waiting.append(entry)
        try:
            done, _ = await asyncio.wait({entry[1]}, timeout=self.queue_timeout)
        except asyncio.CancelledError:
            self._abandon(entry)
            raise
        if not done:
            self._abandon(entry)
            raise TimeoutError(f"no Salt worker free within {self.queue_timeout:g}s")
        return entry[1].result()

    def _abandon(self, entry: tuple[str | None, asyncio.Future[Release]]) -> None:
        future = entry[1]
        if future.done() and not future.cancelled():
            future.result()()  # granted as its caller gave up: give it back at once
        else:
            future.cancel()
        if entry in self.waiting:
            self.waiting.remove(entry)
