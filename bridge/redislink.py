"""The bridge's Redis client, which refuses to publish over a fresh connection unnoticed.

A Redis that restarted may have come back from an older snapshot, without the newest
lines and offsets; after a Sentinel failover the new primary may lack what the old one
took last. redis-py would reconnect silently and the next publish would record a newer
offset over the hole. So every connection after the first fails its first command with
a ConnectionError until the bridge has re-read its positions (`resync()`), which makes
the bridge re-fetch from Kafka whatever Redis no longer has.

The connection itself comes from `wire.connect`: one node, or the master the sentinels
name (`redis.follow()` asks them where it is now; a connection left on the old primary is
then made again to the new one, and so fails its first command as above).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import redis

from wire.connect import Connector, RedisTarget

SOCKET_TIMEOUT = 3.0  # seconds for any one Redis call


class ReconnectedError(redis.ConnectionError):
    """A new Redis connection was made outside `resync()`."""


class RedisLink:
    """A redis.Redis client on a single connection, plus the reconnect guard."""

    def __init__(self, target: RedisTarget, socket_timeout: float = SOCKET_TIMEOUT) -> None:
        self.connects = 0
        self.reconnected = False
        self._resyncing = False
        self.redis = Connector(target)
        # One connection, shared in turn by the consume loop and the publishing thread, so
        # that a second connection always means a reconnect.
        self.client = self.redis.client(
            "tailgate-bridge",
            redis.BlockingConnectionPool,
            max_connections=1,
            timeout=None,
            socket_timeout=socket_timeout,
            socket_connect_timeout=1.0,
            redis_connect_func=self._on_connect,
        )

    def _on_connect(self, conn: Any) -> None:
        conn.on_connect()
        self.connects += 1
        if self.connects > 1 and not self._resyncing:
            self.reconnected = True
            raise ReconnectedError("Redis connection re-established; positions must be re-read before publishing")

    @contextlib.contextmanager
    def resync(self) -> Iterator[redis.Redis]:
        """Calls made inside may open a new connection; once they succeed the bridge is
        back in step with what Redis holds."""
        self._resyncing = True
        try:
            yield self.client
            self.reconnected = False
        finally:
            self._resyncing = False

    def close(self) -> None:
        self.redis.close()
