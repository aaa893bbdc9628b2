"""`python -m tests.gateway.planted`: a real gateway process with faults planted where the
gateway would not fail on its own, to test what any failure, whatever its cause, leaves
behind. `TAILGATE_TEST_FAULTS` lists them, comma-separated:

* `open-once`: the first WebSocket's `open` raises (while its session registers);
* `history`: reading the history of a stream whose name holds `boom` raises;
* `dispatch`: the first live batch of a stream whose name holds `boom` raises in the hub,
  which ends the live reader's task; it is restarted after RESTART_DELAY seconds, long
  enough for a test to watch the gateway while the reader is down.

Everything else is the real gateway (`gateway.__main__`).
"""

from __future__ import annotations

import os
from typing import Any

from gateway import tasks
from gateway.__main__ import exit_now, main
from gateway.fanout.history import History
from gateway.fanout.hub import Hub
from gateway.fanout.orchestrator import Orchestrator
from gateway.fanout.session import Session
from wire.envelope import LineId

RESTART_DELAY = 1.5


class PlantedFault(RuntimeError):
    """An exception no code path in the gateway expects."""


def plant(faults: set[str]) -> None:
    armed = set(faults)
    if "open-once" in faults:
        join = Orchestrator.join

        def failing_join(self: Orchestrator, session: Session) -> None:
            if "open-once" in armed:
                armed.discard("open-once")
                raise PlantedFault("planted in open")
            join(self, session)

        Orchestrator.join = failing_join  # type: ignore[method-assign]
    if "history" in faults:
        head = History.head

        async def failing_head(self: History, stream: str) -> LineId | None:
            if "boom" in stream:
                raise PlantedFault("planted in a history read")
            return await head(self, stream)

        History.head = failing_head  # type: ignore[method-assign]
    if "dispatch" in faults:
        dispatch = Hub.dispatch

        def failing_dispatch(self: Hub, stream: str, messages: list[Any]) -> None:
            if "boom" in stream and "dispatch" in armed:
                armed.discard("dispatch")
                raise PlantedFault("planted in the live reader")
            dispatch(self, stream, messages)

        Hub.dispatch = failing_dispatch  # type: ignore[method-assign]
        tasks.RESTART_DELAYS = (RESTART_DELAY,)


if __name__ == "__main__":
    plant({f for f in os.environ.get("TAILGATE_TEST_FAULTS", "").split(",") if f})
    exit_now(main())
