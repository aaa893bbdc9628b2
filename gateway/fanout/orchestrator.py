"""Subscribe orchestration: where the hub, the live reader and history meet.

The order of a subscribe is what makes the switch from history to live exact: register
with the hub (live batches for this client are now held), make sure Redis has confirmed
the channel's SUBSCRIBE, send history as it is read, then let the session release the
held batches it does not already have. The members of a minion glob are subscribed as one
group: all registered and confirmed, then their viewers join together (one Salt job for
their agents), then each one's history. A finite query (`until`, `around`) only reads
history and ends with `complete`: no hub, no SUBSCRIBE, no lease.

A client may go (`leave`) while its subscribe waits for Salt or Redis. `leave` undoes
what the session holds at that moment and forgets the session at once; the subscribe,
the only one to know what it adds later, checks after each wait and undoes its own work
(hub membership, SUBSCRIBE, a file stream's lease). A subscribe that fails leaves
nothing behind either.

After a Redis reconnect every held subscription is resumed from history, from its cursor
and the epoch of its history: a Redis that lost the history (restarted empty, flushed) or
came back behind the cursor is announced there (`gap`, history.py). A read that
fails (Redis still loading its data, no history connection free in time) is retried with
backoff; the client is told `unavailable` when it keeps failing, and after RESUME_GIVE_UP
seconds the subscription goes live after a `gap` instead of staying held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator
from typing import Any, Protocol

from redis.exceptions import RedisError

from gateway.fanout.filters import LineFilter
from gateway.fanout.history import START, Head, History, Page
from gateway.fanout.hub import Hub
from gateway.fanout.live import Unavailable
from gateway.fanout.query import Query, id_before
from gateway.fanout.session import Session
from wire.codes import ErrorCode, GapReason

log = logging.getLogger(__name__)

RESUME_PAUSES = (0.1, 5.0)  # the first and the longest pause between two attempts
RESUME_TELL_AFTER = 3  # failed attempts before the client is told
RESUME_GIVE_UP = 30.0  # seconds of failing before the subscription goes live after a gap
NO_QUERY = Query()


class LiveChannels(Protocol):
    """The live reader: `LiveReader` on one Redis, `ShardedReader` on a cluster."""

    connected: bool

    async def subscribe(self, stream: str) -> None: ...

    async def wait_subscribed(self, stream: str) -> None: ...

    async def unsubscribe(self, stream: str) -> None: ...


class StreamHooks(Protocol):
    """What a kind of stream may add around its viewers (gateway.tails.Tails for files)."""

    async def admit(self, name: str) -> None:
        """Raise `wire.codes.ProtocolError` when this stream must not be opened."""

    def viewers_joined(self, session: Session, names: list[str]) -> None:
        """`session` now watches every stream of `names` (those joined together: one glob)."""

    def last_viewer_left(self, name: str) -> None: ...


class Orchestrator:
    """The gateway's subscription operations over the hub, the live reader and history."""

    def __init__(self, hub: Hub, live: LiveChannels, history: History, hooks: StreamHooks | None = None) -> None:
        self.hub = hub
        self.live = live
        self.history = history
        self.hooks = hooks
        self.sessions: set[Session] = set()
        self.filters: dict[tuple[Session, str], LineFilter] = {}
        self._resuming: dict[tuple[Session, str], int] = {}
        self.all_left = asyncio.Event()
        self.all_left.set()

    async def subscribe(self, session: Session, stream: str, line_filter: LineFilter, query: Query = NO_QUERY) -> None:
        """Subscribe `session` to `stream`; raises `Unavailable` when Redis is down."""
        await self.subscribe_group(session, [stream], line_filter, query)

    async def subscribe_group(
        self, session: Session, streams: list[str], line_filter: LineFilter, query: Query = NO_QUERY
    ) -> None:
        """Subscribe `session` to every stream of `streams` with one filter and query (the
        members of a minion glob): each is registered and confirmed before any history is
        read, so their viewers join together (one Salt target for the file streams' agents).
        Raises `Unavailable` when Redis is down."""
        if self.hooks is not None:
            for stream in streams:
                await self.hooks.admit(stream)  # a refused file stream raises ProtocolError: nothing else happens
        if session not in self.sessions:
            return  # it left during admission, before anything was added
        if not self.live.connected:
            raise Unavailable("not connected to redis")
        if query.finite:
            for stream in streams:
                await self._finite(session, stream, line_filter, query)
            return
        generations: dict[str, int] = {}
        done = False
        try:
            for stream in streams:
                session.forget(stream)
                generations[stream] = session.begin(stream, query.since, query.epoch, query.caught_up)
                self.filters[(session, stream)] = line_filter
                if self.hub.add(stream, session, line_filter):
                    await self.live.subscribe(stream)
                else:
                    await self.live.wait_subscribed(stream)
                # Checked before the viewers join: a lease taken now would outlive the client.
                if session not in self.sessions:
                    return
            for stream in streams:
                session.control({"type": "subscribed", "stream": stream})
            if self.hooks is not None:
                self.hooks.viewers_joined(session, streams)
            for stream in streams:
                await self._catch_up(session, stream, generations[stream], query, line_filter)
            done = True
        except (Unavailable, RedisError, OSError) as exc:
            raise Unavailable(str(exc)) from None
        finally:
            if not done:
                for stream in generations:
                    await self.unsubscribe(session, stream)

    async def _finite(self, session: Session, stream: str, line_filter: LineFilter, query: Query) -> None:
        """A query with an end (`until`, `around`): history only, then `complete`. It holds
        no hub membership, no SUBSCRIBE and no file-stream lease; a live subscription of the
        same stream on this session is replaced by it."""
        if stream in session.subs:
            await self.unsubscribe(session, stream)
        generation = session.begin(stream, epoch=query.epoch)
        session.control({"type": "subscribed", "stream": stream})
        match = line_filter.match
        reads: list[AsyncGenerator[Page, None]] = []
        if query.around is not None:
            before = id_before(query.around)
            if query.context:
                head = await self.history.head(stream)
                reads.append(self.history.backlog(stream, query.context, match, before, head.epoch))
            reads.append(self.history.since(stream, before, match, limit=query.context + 1, held_cursor=False))
        elif query.since is not None or not query.backlog:
            since, held = (query.since, not query.since_is_time) if query.since is not None else (START, False)
            reads.append(self.history.since(stream, since, match, query.epoch, query.until, held_cursor=held))
        else:
            assert query.until is not None  # (finite)
            head = await self.history.head(stream)
            reads.append(self.history.backlog(stream, query.backlog, match, id_before(query.until), head.epoch))
        try:
            for pages in reads:
                async with contextlib.aclosing(pages):
                    async for page in pages:
                        if not session.history(stream, generation, page):
                            return  # superseded, or the client left
                        await session.room()
        except (RedisError, OSError) as exc:
            session.forget(stream)
            raise Unavailable(str(exc)) from None
        session.complete(stream, generation)

    async def _catch_up(
        self, session: Session, stream: str, generation: int, query: Query, line_filter: LineFilter
    ) -> None:
        """Send history as it is read, then let the session go live."""
        match = line_filter.match
        head = Head(None, None)
        pages: AsyncGenerator[Page, None] | None = None
        backlog, since = query.backlog, query.since
        if since is not None:
            pages = self.history.since(stream, since, match, query.epoch, held_cursor=not query.since_is_time)
        else:
            head = await self.history.head(stream)
            # no lines, but the epoch the subscription starts in
            if not session.history(stream, generation, Page([], epoch=head.epoch)):
                return
            if backlog and head.last is not None:
                pages = self.history.backlog(stream, backlog, match, head.last, head.epoch)
        if pages is not None:
            async with contextlib.aclosing(pages):
                async for page in pages:
                    if not session.history(stream, generation, page):
                        return  # superseded, or the client left
                    await session.room()
        if backlog:
            session.finish(stream, generation, head=head.last)
        else:
            session.finish(stream, generation, start=head.last)

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
        """Forget a closed session and every subscription it held (a subscribe still in
        flight undoes its own part when it next wakes up)."""
        self.sessions.discard(session)
        if not self.sessions:
            self.all_left.set()
        for stream in list(session.subs):
            await self.unsubscribe(session, stream)

    def hold_all(self) -> None:
        """Redis was lost: hold live batches for every subscription until it resumes."""
        for session in list(self.sessions):
            for stream in list(session.subs):
                # a finite query in progress has no live part to hold: its read fails (unavailable)
                if (session, stream) in self.filters:
                    self._resuming[(session, stream)] = session.begin(stream)

    async def resume_all(self) -> None:
        """After a Redis reconnect: fill every client's missed lines from history."""
        resuming, self._resuming = self._resuming, {}
        results = await asyncio.gather(*(self._resume(s, stream, gen) for (s, stream), gen in resuming.items()))
        log.info("resumed %d of %d subscriptions after redis reconnect", sum(results), len(results))

    async def _resume(self, session: Session, stream: str, generation: int) -> bool:
        """Catch one held subscription up from its cursor, retrying a failed read with
        backoff; after RESUME_GIVE_UP seconds, go live after a `gap`. True when caught up."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + RESUME_GIVE_UP
        pause, failures = RESUME_PAUSES[0], 0
        while session.catching_up(stream, generation) and (session, stream) in self.filters:
            try:
                cursor, epoch = session.resume_point(stream)
                resume = Query(since=cursor, epoch=epoch)
                await self._catch_up(session, stream, generation, resume, self.filters[(session, stream)])
                return True
            except (RedisError, OSError) as exc:
                failures += 1
                log.warning("resume of %s for %s failed (attempt %d): %s", stream, session.peer, failures, exc)
            except Exception:
                log.exception("resume of %s for %s failed; going live after a gap", stream, session.peer)
                break  # not a Redis failure: another attempt would fail the same way
            if failures == RESUME_TELL_AFTER:
                message = "history cannot be read after a Redis reconnect; still trying"
                session.control({"type": "error", "code": ErrorCode.UNAVAILABLE, "message": message, "stream": stream})
            if loop.time() + pause > give_up_at:
                log.error(
                    "resume of %s for %s: gave up after %d attempts; live after a gap", stream, session.peer, failures
                )
                break
            await asyncio.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, RESUME_PAUSES[1])
        # (the epoch is not known now: the next live batch's is taken without a gap, after this one)
        if session.history(stream, generation, Page([], GapReason.UNAVAILABLE)):
            session.finish(stream, generation)
        return False
