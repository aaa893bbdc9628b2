"""Background tasks of one gateway process, supervised in one place.

Every task the gateway starts outside a request goes through `Tasks`: a one-shot job
(`spawn`) has its failure logged and counted; a loop that must run for the process's
life (`supervise`) is also restarted after a pause, so no background work dies quietly.
A loop the gateway cannot serve without (the live reader) is supervised with a `ready`
check: from a failure until that check holds again, `down()` names it and `/readyz`
answers 503 with that name.
`close` cancels whatever is still running at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

log = logging.getLogger(__name__)

RESTART_DELAYS = (0.1, 0.5, 1.0, 5.0)


class TaskMetrics(Protocol):
    """Where failures are counted (gateway.metrics.GatewayMetrics provides it)."""

    def task_failed(self, task: str) -> None: ...


class Tasks:
    """The process's background tasks: started, watched, restarted, cancelled."""

    def __init__(self, metrics: TaskMetrics | None = None) -> None:
        self.metrics = metrics
        self._running: set[asyncio.Task[Any]] = set()
        self._ready: dict[str, Callable[[], bool]] = {}
        self._failed: set[str] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a one-shot job; if it fails, the failure is logged and counted."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._running.add(task)
        task.add_done_callback(self._finished)
        return task

    def supervise(
        self, name: str, run: Callable[[], Awaitable[None]], ready: Callable[[], bool] | None = None
    ) -> asyncio.Task[None]:
        """Run `run` until it returns; restart it (after a growing pause) when it fails.

        With `ready` (a task the gateway needs), `down()` names the task from a failure
        until `ready()` holds again after its restart."""
        if ready is not None:
            self._ready[name] = ready
        return self.spawn(self._keep_running(name, run), name)

    async def _keep_running(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        failures = 0
        while True:
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %s failed; restarting it", name)
                self._count(name)
                if name in self._ready:
                    self._failed.add(name)
                delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
                failures += 1
            await asyncio.sleep(delay)

    def down(self) -> list[str]:
        """Needed tasks that failed and are not ready again yet (waiting to restart, or restarted
        and still starting up)."""
        self._failed = {name for name in self._failed if not self._ready[name]()}
        return sorted(self._failed)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("background task %s failed", task.get_name(), exc_info=exc)
            self._count(task.get_name())

    def _count(self, name: str) -> None:
        if self.metrics is not None:
            self.metrics.task_failed(name)

    async def close(self) -> None:
        """Cancel every task still running and wait for them to end."""
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
