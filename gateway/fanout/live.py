"""The live reader: the process's one Redis pub/sub connection, the I/O shell around the hub.

The reader loop only reads and hands messages to the hub, which only enqueues, so it
never blocks on a client. It reads through `RespConnection` (fanout/resp.py):
every message already on the socket in one go, and a loop of its own that does not end
when nothing is subscribed. SUBSCRIBE/UNSUBSCRIBE are sent on a stream's first and last
viewer; callers wait for Redis to confirm a SUBSCRIBE before reading history, which is
what makes the history-to-live switch exact. On a lost connection it reconnects with
backoff, resubscribes from the hub's stream list (the truth, not redis-py's memory) and,
once Redis has confirmed every channel on that same connection, tells the gateway to
resume every client from history (the loop, confirmations and resume: fanout/reader.py,
shared with the Redis Cluster reader, fanout/shards.py). With Redis Sentinel
(`wire.connect`) every connection goes to the master the sentinels name (resolved anew on
each reconnect, and checked with ROLE), and a failover is a lost connection like any
other: the demoted primary closes it, or, sooner, the sentinels name another master
(asked once a second) and the reader drops it; the reconnect resumes everyone from the
new primary's history (a `gap` where it lacks lines a viewer saw).

Invariants: those of fanout/reader.py; complete messages already read are handed on
before the subscriptions are held.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import RedisError

from gateway.fanout.reader import Subscriber, Unavailable
from gateway.fanout.resp import RespConnection

log = logging.getLogger(__name__)

__all__ = ["LiveReader", "Unavailable"]


class LiveReader(Subscriber):
    """Owns the pub/sub connection to one Redis."""

    _conn: RespConnection | None = None  # the one connection, while open

    async def _open(self) -> None:
        self._conn = await RespConnection.open(await self.redis.node(), "tailgate-gateway-pubsub")
        if self.redis.sentinel:
            self.tasks.spawn(self._follow_master(self._conn), "redis-master-watch")

    def _subscribe_all(self, streams: list[str]) -> None:
        if streams and self._conn is not None:
            self._conn.subscribe(*(self.keys.live(s) for s in streams))

    def _send_subscribe(self, stream: str) -> None:
        if self._conn is None:
            raise Unavailable("not connected to redis")
        self._conn.subscribe(self.keys.live(stream))

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

    def _reconnected(self, streams: int) -> None:
        log.info("redis pub/sub reconnected; resubscribing %d streams", streams)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _read(self) -> None:
        assert self._conn is not None
        await self._read_from(self._conn, self._handle, "redis")

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
            if stream is not None:
                self._confirmed(stream)

    async def unsubscribe(self, stream: str) -> None:
        """UNSUBSCRIBE a stream's channel (its last viewer left)."""
        if self.connected and self._conn is not None:
            try:
                self._conn.unsubscribe(self.keys.live(stream))
            except (RedisError, OSError) as exc:
                log.warning("unsubscribe %s failed: %s (the reconnect will not resubscribe it)", stream, exc)
