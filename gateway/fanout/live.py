"""The live reader: the process's one Redis pub/sub connection, the I/O shell around the hub.

The reader loop only reads and hands messages to the hub, which only enqueues, so it
never blocks on a client. It reads through `RespConnection` (fanout/resp.py):
every message already on the socket in one go, and a loop of its own that does not end
when nothing is subscribed. SUBSCRIBE/UNSUBSCRIBE are sent on a stream's first and last
viewer; callers wait for Redis to confirm a SUBSCRIBE before reading history, which is
what makes the history-to-live switch exact. On a lost connection it reconnects with
backoff, resubscribes from the hub's stream list (the truth, not redis-py's memory) and,
once Redis has confirmed every channel on that same connection, tells the gateway to
resume every client from history. With Redis Sentinel (`wire.connect`) every connection
goes to the master the sentinels name, and a failover is a lost connection like any
other: the demoted primary closes it, or, sooner, the sentinels name another master
(asked once a second) and the reader drops it; the reconnect resumes everyone from the
new primary's history (a `gap` where it lacks lines a viewer saw).

Invariants: whatever ends a connection (Redis, a keepalive timeout, an unexpected
exception, `stop`), every subscription is held before anything else happens, so no
viewer believes it is live while nothing is read; complete messages already read are
handed on first. A resume belongs to one connection: one lost before its resume starts
leaves the resume to the next connection.
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


class Unavailable(Exception):
    """Redis cannot be reached right now; the client is told `unavailable`."""


class ReconnectMetrics(Protocol):
    """Where reconnects are counted (gateway.metrics.GatewayMetrics provides it)."""

    def redis_reconnect(self) -> None: ...


class LiveReader:
    """Owns the pub/sub connection, its reconnects, and SUBSCRIBE confirmations."""

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
        self.keys = keys
        self.hub = hub
        self.on_lost = on_lost
        self.on_reconnected = on_reconnected
        self.tasks = tasks
        self.metrics = metrics
        self.confirm_timeout = confirm_timeout
        self.coalesce = coalesce
        self.connected = False
        self._conn: RespConnection | None = None
        self._confirm: dict[str, deque[asyncio.Future[None]]] = {}
        self._stopping = False
        self._ever_connected = False
        self._epoch = 0  # counts connections, so a resume knows whether its connection still stands

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
                    await self._read_loop()
                except (RedisError, OSError) as exc:
                    if self._stopping:
                        break
                    if self.connected or not self._ever_connected:
                        log.warning("redis pub/sub connection lost or refused: %s; retrying", exc)
                self._disconnect()
                if self._stopping:
                    break
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)
        finally:
            self._disconnect()

    async def _connect(self) -> None:
        self._conn = await RespConnection.open(self.redis, "tailgate-gateway-pubsub")
        self._epoch += 1
        if self.redis.sentinel:
            self.tasks.spawn(self._follow_master(self._conn), "redis-master-watch")
        streams = self.hub.streams()
        if streams:
            for stream in streams:
                self._confirm.setdefault(stream, deque()).append(asyncio.get_running_loop().create_future())
            self._conn.subscribe(*(self.keys.live(s) for s in streams))
        self.connected = True
        if self._ever_connected:
            log.info("redis pub/sub reconnected; resubscribing %d streams", len(streams))
            if self.metrics is not None:
                self.metrics.redis_reconnect()
            self.tasks.spawn(self._after_reconnect(self._epoch, streams), "resume-after-reconnect")
        self._ever_connected = True

    async def _follow_master(self, conn: RespConnection) -> None:
        """Drop `conn` once the sentinels name another master. After a failover the old
        primary stays a writable master until Sentinel demotes it (seconds later):
        nothing is published there any more that will last, nor read here from the new one."""
        while self._conn is conn:
            await asyncio.sleep(self.redis.follow_interval)
            master = await self.redis.follow(at_once=True)
            if self._conn is conn and master is not None and master != conn.address:
                log.warning("redis: the master moved to %s:%d; moving the pub/sub connection there", *master)
                conn.close()

    async def _after_reconnect(self, epoch: int, streams: list[str]) -> None:
        results = await asyncio.gather(*(self._wait_confirmed(s) for s in streams), return_exceptions=True)
        if epoch != self._epoch or not self.connected:
            return  # lost again meanwhile: subscriptions are held anew, the next connection resumes them
        if any(isinstance(r, BaseException) for r in results):
            # Resuming now would read history before the channels are live: lines published
            # in between would reach nobody. Start over on a new connection instead.
            log.warning("redis did not confirm the resubscription in %.0fs; reconnecting", self.confirm_timeout)
            if self._conn is not None:
                self._conn.close()
            return
        await self.on_reconnected()

    async def _read_loop(self) -> None:
        """Read, and hand messages to the hub grouped by stream, in order.

        Messages are gathered for up to `coalesce` seconds after the first one: with many
        streams each publishing small batches, that merges a stream's batches into one
        frame per client instead of one per publish, which is what bounds the gateway's
        work per client; when the gateway falls behind, batches grow further on their own.
        """
        assert self._conn is not None
        conn = self._conn
        loop = asyncio.get_running_loop()
        pinged = False
        burst: dict[str, list[bytes]] = {}
        flush_at = 0.0
        try:
            while not self._stopping:
                wait = max(0.0, flush_at - loop.time()) if burst else KEEPALIVE_SECONDS
                try:
                    async with asyncio.timeout(wait):
                        replies = await conn.read()
                except TimeoutError:
                    if burst:
                        self._flush(burst)
                        burst = {}
                        continue
                    if pinged:
                        raise RedisError("no answer to keepalive PING") from None
                    conn.ping()
                    pinged = True
                    continue
                pinged = False
                if not burst:
                    flush_at = loop.time() + self.coalesce
                for reply in replies:
                    self._handle(reply, burst)
                if burst and loop.time() >= flush_at:
                    self._flush(burst)
                    burst = {}
        except (RedisError, OSError):
            # Messages read before the connection failed are complete: hand them on before
            # the subscriptions are held. A restarted Redis may no longer have them in history.
            self._flush(burst)
            raise

    def _flush(self, burst: dict[str, list[bytes]]) -> None:
        for stream, messages in burst.items():
            self.hub.dispatch(stream, messages)

    def _handle(self, reply: list[Any], burst: dict[str, list[bytes]]) -> None:
        if isinstance(reply, Exception):
            raise reply
        kind = reply[0]
        if kind == b"message":
            stream = self.keys.stream_of_channel(reply[1])
            if stream is not None:
                burst.setdefault(stream, []).append(reply[2])
        elif kind == b"subscribe":
            stream = self.keys.stream_of_channel(reply[1])
            waiting = self._confirm.get(stream or "")
            if waiting:
                fut = waiting.popleft()
                if not fut.done():
                    fut.set_result(None)
                if not waiting:
                    self._confirm.pop(stream or "", None)

    def _disconnect(self) -> None:
        if self.connected:
            self.on_lost()
        self.connected = False
        for waiting in self._confirm.values():
            for fut in waiting:
                if not fut.done():
                    fut.set_exception(Unavailable("redis connection lost"))
        self._confirm.clear()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _wait_confirmed(self, stream: str) -> None:
        waiting = self._confirm.get(stream)
        if waiting:
            await asyncio.wait_for(asyncio.shield(waiting[-1]), self.confirm_timeout)

    async def subscribe(self, stream: str) -> None:
        """SUBSCRIBE to a stream's channel and wait until Redis confirms it."""
        if not self.connected or self._conn is None:
            raise Unavailable("not connected to redis")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirm.setdefault(stream, deque()).append(fut)
        try:
            self._conn.subscribe(self.keys.live(stream))
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

    async def unsubscribe(self, stream: str) -> None:
        """UNSUBSCRIBE a stream's channel (its last viewer left)."""
        if self.connected and self._conn is not None:
            try:
                self._conn.unsubscribe(self.keys.live(stream))
            except (RedisError, OSError) as exc:
                log.warning("unsubscribe %s failed: %s (the reconnect will not resubscribe it)", stream, exc)

    async def stop(self) -> None:
        self._stopping = True
        self._disconnect()
