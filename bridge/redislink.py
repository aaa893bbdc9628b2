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

On Redis Cluster (`redis.mode: cluster`) the same rule holds per node: `resync()` opens a
connection to every primary (PING), and any connection opened outside it, to a node seen
before or to a new one (a replica promoted after a failover, which may be behind its old
primary), fails its first command until positions are re-read. redis-py's cluster client
raises RedisClusterException (not a RedisError) when no node answers: `REDIS_ERRORS`
names both for the bridge's handlers.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import redis
from redis.exceptions import RedisClusterException

from wire.connect import Connector, RedisTarget

SOCKET_TIMEOUT = 3.0  # seconds for any one Redis call
REDIS_ERRORS = (redis.RedisError, RedisClusterException)

log = logging.getLogger(__name__)


class Stopped(Exception):
    """The bridge was told to stop while it waited for Redis."""


class ReconnectedError(redis.ConnectionError):
    """A new Redis connection was made outside `resync()`."""


class RedisLink:
    """A redis.Redis client on a single connection, plus the reconnect guard."""

    def __init__(
        self, target: RedisTarget, socket_timeout: float = SOCKET_TIMEOUT, stop: threading.Event | None = None
    ) -> None:
        self.connects = 0
        self.reconnected = False
        self._resyncing = False
        self._pinged = False
        self.redis = Connector(target)
        if target.cluster:
            self.client: redis.Redis | redis.RedisCluster = self._cluster(socket_timeout, stop)
            return
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

    def _cluster(self, socket_timeout: float, stop: threading.Event | None) -> redis.RedisCluster:
        """The cluster client, once a seed answers (redis-py reads the slot map right away);
        raises `Stopped` when `stop` is set first."""
        delay = 0.5
        self._resyncing = True
        try:
            while True:
                try:
                    return self.redis.client(  # type: ignore[return-value]  # cluster mode: a RedisCluster
                        "tailgate-bridge",
                        socket_timeout=socket_timeout,
                        socket_connect_timeout=1.0,
                        redis_connect_func=self._on_cluster_connect,
                        # one connection per node, shared in turn, as on one node
                        connection_pool_class=redis.BlockingConnectionPool,
                        max_connections=1,
                    )
                except REDIS_ERRORS as exc:
                    log.warning("no Redis Cluster node answers (%s); retrying in %.1fs", exc, delay)
                if stop is not None and stop.wait(delay):
                    raise Stopped("stopped before a Redis Cluster node answered")
                delay = min(delay * 2, 5.0)
        finally:
            self._resyncing = False

    def _on_cluster_connect(self, conn: Any) -> None:
        # redis-py's cluster client has already run conn.on_connect() (AUTH, SETNAME)
        self.connects += 1
        if not self._resyncing:
            self.reconnected = True
            raise ReconnectedError("Redis connection re-established; positions must be re-read before publishing")

    @contextlib.contextmanager
    def resync(self) -> Iterator[redis.Redis | redis.RedisCluster]:
        """Calls made inside may open a new connection; once they succeed the bridge is
        back in step with what Redis holds."""
        self._resyncing = True
        try:
            if isinstance(self.client, redis.RedisCluster) and (self.reconnected or not self._pinged):
                # a connection to every primary now, so that none is opened outside resync
                self.client.ping(target_nodes=redis.RedisCluster.PRIMARIES)
                self._pinged = True
            yield self.client
            self.reconnected = False
        finally:
            self._resyncing = False

    def close(self) -> None:
        self.redis.close()
