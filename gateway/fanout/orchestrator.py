"""Subscribe orchestration: where the hub, the live reader and history meet.

The order of a subscribe is what makes the switch from history to live exact: register
with the hub (live batches for this client are now held), make sure Redis has confirmed
the channel's SUBSCRIBE, read history, then let the session send history and release
the held batches it does not already have.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

from redis.exceptions import RedisError

from gateway.fanout.filters import LineFilter
from gateway.fanout.history import History
from gateway.fanout.hub import Hub
from gateway.fanout.live import LiveReader, Unavailable
from gateway.fanout.session import Session
from wire.envelope import LineId

log = logging.getLogger(__name__)


class StreamHooks(Protocol):
    """What a kind of stream may add around its viewers (gateway.tails.Tails for files)."""

    async def admit(self, name: str) -> None:
        """Raise `wire.codes.ProtocolError` when this stream must not be opened."""

    def viewer_joined(self, session: Session, name: str) -> None: ...

    def last_viewer_left(self, name: str) -> None: ...


class Orchestrator:
    """The gateway's subscription operations over the hub, the live reader and history."""

    def __init__(self, hub: Hub, live: LiveReader, history: History, hooks: StreamHooks | None = None) -> None:
        self.hub = hub
        self.live = live
        self.history = history
        self.hooks = hooks
        self.sessions: set[Session] = set()
        self.filters: dict[tuple[Session, str], LineFilter] = {}
        self._resuming: dict[tuple[Session, str], int] = {}
        self.all_left = asyncio.Event()
        self.all_left.set()

    async def subscribe(
        self,
        session: Session,
        stream: str,
        line_filter: LineFilter,
        backlog: int = 0,
        since: LineId | None = None,
    ) -> None:
        """Subscribe `session` to `stream`; raises `Unavailable` when Redis is down."""
        if self.hooks is not None:
            await self.hooks.admit(stream)  # a refused file stream raises ProtocolError: nothing else happens
        if not self.live.connected:
            raise Unavailable("not connected to redis")
        session.forget(stream)
        generation = session.begin(stream, since)
        self.filters[(session, stream)] = line_filter
        first = self.hub.add(stream, session, line_filter)
        try:
            if first:
                await self.live.subscribe(stream)
            else:
                await self.live.wait_subscribed(stream)
            session.control({"type": "subscribed", "stream": stream})
            if self.hooks is not None:
                self.hooks.viewer_joined(session, stream)
            await self._catch_up(session, stream, generation, backlog, since, line_filter)
        except (Unavailable, RedisError, OSError) as exc:
            await self.unsubscribe(session, stream)
            raise Unavailable(str(exc)) from None

    async def _catch_up(
        self,
        session: Session,
        stream: str,
        generation: int,
        backlog: int,
        since: LineId | None,
        line_filter: LineFilter,
    ) -> None:
        match = line_filter.match
        if since is not None:
            lines, gap = await self.history.since(stream, since, match)
            session.finish(stream, generation, lines, None, gap)
        elif backlog:
            lines, head = await self.history.backlog(stream, backlog, match)
            session.finish(stream, generation, lines, head)
        else:
            session.finish(stream, generation, [], None, start=await self.history.head(stream))

    async def unsubscribe(self, session: Session, stream: str) -> None:
        session.forget(stream)
        self.filters.pop((session, stream), None)
        if self.hub.remove(stream, session):
            if self.hooks is not None:
                self.hooks.last_viewer_left(stream)
            await self.live.unsubscribe(stream)

    def notify(self, stream: str, frame: dict[str, Any]) -> None:
        """Send a control frame to every session watching `stream` (file-tail status)."""
        for session in self.sessions:
            if stream in session.subs:
                session.control(frame)

    def join(self, session: Session) -> None:
        self.sessions.add(session)
        self.all_left.clear()

    async def leave(self, session: Session) -> None:
        """Forget a closed session and every subscription it held."""
        self.sessions.discard(session)
        if not self.sessions:
            self.all_left.set()
        for stream in list(session.subs):
            await self.unsubscribe(session, stream)

    def hold_all(self) -> None:
        """Redis was lost: hold live batches for every subscription until it resumes."""
        for session in list(self.sessions):
            for stream in list(session.subs):
                self._resuming[(session, stream)] = session.begin(stream)

    async def resume_all(self) -> None:
        """After a Redis reconnect: fill every client's missed lines from history."""
        resuming, self._resuming = self._resuming, {}
        jobs: list[Coroutine[Any, Any, None]] = []
        for (session, stream), generation in resuming.items():
            line_filter = self.filters.get((session, stream))
            if line_filter is None or session.closed:
                continue
            cursor = session.resume_point(stream)
            jobs.append(self._catch_up(session, stream, generation, 0, cursor, line_filter))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            log.error("resume after reconnect: %d of %d catch-ups failed: %s", len(failed), len(jobs), failed[0])
        log.info("resumed %d subscriptions after redis reconnect", len(jobs) - len(failed))
