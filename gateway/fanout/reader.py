"""What every live reader shares: the reconnect loop, SUBSCRIBE confirmations, the resume.

A live reader owns the gateway's pub/sub connections: `LiveReader` (fanout/live.py) one
connection to one Redis, `ShardedReader` (fanout/shards.py) one per Redis Cluster primary.
This base holds what does not depend on how many: `run` connects, reads and starts over
with backoff; callers wait for Redis to confirm a stream's (S)SUBSCRIBE before reading
history, which makes the history-to-live switch exact; after a reconnect, once every
stream is confirmed on the new connections, `on_reconnected` resumes every client.

Invariants: whatever ends the connections (Redis, a keepalive timeout, an unexpected
exception, `stop`), every subscription is held (`on_lost`) before anything else happens,
so no viewer believes it is live while nothing is read. A resume belongs to one
generation of connections: one lost before its resume starts leaves the resume to the next.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from redis.exceptions import RedisError

from gateway.fanout.hub import Hub
from gateway.fanout.resp import RespConnection
from gateway.tasks import Tasks
from wire import Keys
from wire.connect import AsyncConnector

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 5.0

Handler = Callable[[Any, dict[str, list[bytes]]], None]


class Unavailable(Exception):
    """Redis cannot be reached right now; the client is told `unavailable`."""


class ReconnectMetrics(Protocol):
    """Where reconnects are counted (gateway.metrics.GatewayMetrics provides it)."""

    def redis_reconnect(self) -> None: ...


class Subscriber:
    """The reconnect loop and confirmations; subclasses own the connections."""

    what = "redis pub/sub"  # in log lines

    def __init__(
        self,
        redis: AsyncConnector,
        keys: Keys,
        hub: Hub,
        on_lost: Callable[[], None],
        on_reconnected: Callable[[], Awaitable[None]],
        tasks: Tasks,
        metrics: ReconnectMetrics | None = None,
        confirm_timeout: float = 5.0,
        coalesce: float = 0.0,
    ) -> None:
        self.redis = redis
        self.metrics = metrics
        self.keys = keys
        self.hub = hub
        self.on_lost = on_lost
        self.on_reconnected = on_reconnected
        self.tasks = tasks
        self.confirm_timeout = confirm_timeout
        self.coalesce = coalesce
        self.connected = False
        self._confirm: dict[str, deque[asyncio.Future[None]]] = {}
        self._stopping = False
        self._ever_connected = False
        self._epoch = 0  # counts generations of connections, so a resume knows whether its own still stands

    # --- what a subclass provides -------------------------------------------------------

    async def _open(self) -> None:
        """Open the connections."""
        raise NotImplementedError

    def _subscribe_all(self, streams: list[str]) -> None:
        """Send the (S)SUBSCRIBEs of every stream of the hub on connections just opened."""
        raise NotImplementedError

    async def _read(self) -> None:
        """Read until a connection fails (raising RedisError or OSError)."""
        raise NotImplementedError

    def _close(self) -> None:
        """Close every connection (the reader loop then fails and `run` starts over)."""
        raise NotImplementedError

    def _send_subscribe(self, stream: str) -> None:
        raise NotImplementedError

    def _reconnected(self, streams: int) -> None:
        """Log a reconnect (and count what a subclass counts beyond `redis_reconnect`)."""

    # --- the loop -----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Connected and every SUBSCRIBE confirmed: what /readyz reports."""
        return self.connected and not any(self._confirm.values())

    async def run(self) -> None:
        """Connect, read, and reconnect forever (until `stop`).

        An exception other than a Redis or socket error escapes to the supervisor
        (gateway/tasks.py), which restarts `run` after a pause; the `finally` first leaves
        everything as after a lost connection, so the restart resumes every viewer."""
        delay = 0.1
        try:
            while not self._stopping:
                try:
                    await self._connect()
                    delay = 0.1
                    await self._read()
                except (RedisError, OSError) as exc:
                    if self._stopping:
                        break
                    if self.connected or not self._ever_connected:
                        log.warning("%s connection lost or refused: %s; retrying", self.what, exc)
                self._disconnect()
                if self._stopping:
                    break
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)
        finally:
            self._disconnect()

    async def _connect(self) -> None:
        await self._open()
        self._epoch += 1
        streams = self.hub.streams()
        for stream in streams:
            self._expect(stream)
        self._subscribe_all(streams)
        self.connected = True
        if self._ever_connected:
            if self.metrics is not None:
                self.metrics.redis_reconnect()
            self._reconnected(len(streams))
            self.tasks.spawn(self._after_reconnect(self._epoch, streams), "resume-after-reconnect")
        self._ever_connected = True

    async def _after_reconnect(self, epoch: int, streams: list[str]) -> None:
        results = await asyncio.gather(*(self._wait_confirmed(s) for s in streams), return_exceptions=True)
        if epoch != self._epoch or not self.connected:
            return  # lost again meanwhile: subscriptions are held anew, the next connection resumes them
        if any(isinstance(r, BaseException) for r in results):
            # Resuming now would read history before the channels are live: lines published
            # in between would reach nobody. Start over on new connections instead.
            log.warning("redis did not confirm the resubscription in %.0fs; reconnecting", self.confirm_timeout)
            self._close()
            return
        await self.on_reconnected()

    def _disconnect(self) -> None:
        if self.connected:
            self.on_lost()
        self.connected = False
        for waiting in self._confirm.values():
            for fut in waiting:
                if not fut.done():
                    fut.set_exception(Unavailable("redis connection lost"))
        self._confirm.clear()
        self._close()

    async def _read_from(self, conn: RespConnection, handle: Handler, source: str) -> None:
        """Read `conn`, and hand messages to the hub grouped by stream, in order; `handle`
        sorts each reply into the burst (or raises to end the connection).

        Hand-offs are at least `coalesce` seconds apart (see `_flush`): messages arriving
        sooner wait and go on together. With many streams each publishing small batches,
        that merges a stream's batches into one frame per client instead of one per
        publish, which is what bounds the gateway's work per client; when the gateway falls
        behind, batches grow further on their own. A message after a quiet spell (longer
        than `coalesce`) goes at once: a low rate waits for nothing.
        """
        loop = asyncio.get_running_loop()
        pinged = False
        burst: dict[str, list[bytes]] = {}
        flush_at = float("-inf")  # when the window after the previous hand-off closes
        try:
            while not self._stopping:
                wait = max(0.0, flush_at - loop.time()) if burst else KEEPALIVE_SECONDS
                try:
                    async with asyncio.timeout(wait):
                        replies = await conn.read()
                except TimeoutError:
                    if burst:
                        flush_at = self._flush(burst)
                        burst = {}
                        continue
                    if pinged:
                        raise RedisError(f"no answer to keepalive PING from {source}") from None
                    conn.ping()
                    pinged = True
                    continue
                pinged = False
                for reply in replies:
                    handle(reply, burst)
                if burst and loop.time() >= flush_at:
                    flush_at = self._flush(burst)
                    burst = {}
        except (RedisError, OSError):
            # Messages read before the connection failed are complete: hand them on before
            # the subscriptions are held. A restarted Redis may no longer have them in history.
            self._flush(burst)
            raise

    def _flush(self, burst: dict[str, list[bytes]]) -> float:
        """Hand `burst` to the hub; return when the next coalescing window closes.

        The window runs from the start of this hand-off, so a stream publishing about once
        a window is not held back by the time hand-offs take. A hand-off that outlasted the
        window (the gateway falling behind) is followed by a whole window of gathering
        instead, so batches grow rather than hand-offs following each other ever smaller."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        for stream, messages in burst.items():
            self.hub.dispatch(stream, messages)
        ended = loop.time()
        return (ended if ended - began >= self.coalesce else began) + self.coalesce

    # --- confirmations ------------------------------------------------------------------

    def _expect(self, stream: str) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirm.setdefault(stream, deque()).append(fut)
        return fut

    def _confirmed(self, stream: str) -> None:
        """Redis confirmed one (S)SUBSCRIBE of `stream`, in the order they were sent."""
        waiting = self._confirm.get(stream)
        if waiting and not (fut := waiting.popleft()).done():
            fut.set_result(None)
        if not waiting:
            self._confirm.pop(stream, None)

    async def _wait_confirmed(self, stream: str) -> None:
        waiting = self._confirm.get(stream)
        if waiting:
            await asyncio.wait_for(asyncio.shield(waiting[-1]), self.confirm_timeout)

    async def subscribe(self, stream: str) -> None:
        """(S)SUBSCRIBE to a stream's channel and wait until Redis confirms it."""
        if not self.connected:
            raise Unavailable("not connected to redis")
        fut = self._expect(stream)
        try:
            self._send_subscribe(stream)
            await asyncio.wait_for(asyncio.shield(fut), self.confirm_timeout)
        except (TimeoutError, RedisError, OSError) as exc:
            raise Unavailable(f"subscribe failed: {exc}") from None

    async def wait_subscribed(self, stream: str) -> None:
        """Wait for any SUBSCRIBE of `stream` still in flight (another viewer's)."""
        if not self.connected:
            raise Unavailable("not connected to redis")
        try:
            await self._wait_confirmed(stream)
        except TimeoutError:
            raise Unavailable("subscribe not confirmed") from None

    async def stop(self) -> None:
        self._stopping = True
        self._disconnect()
