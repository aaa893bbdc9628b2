"""Connections to Tailgate's Redis, built from its settings: nobody builds a client by hand.

Tailgate's Redis is one node (``mode: single``, at ``url``), a primary with replicas
that Redis Sentinel watches (``mode: sentinel``: the ``sentinels`` name the master they
monitor as ``master_name``), or a Redis Cluster (``mode: cluster``: ``cluster_nodes`` are
seeds; docs/CLUSTER.md). The mode is a setting, never guessed: sentinels or cluster nodes
named in another mode are refused. The gateway, the bridge, the tail agent and the
master's engine build every Redis client with a `Connector` (threads) or an
`AsyncConnector` (asyncio) over one `RedisTarget`, which also checks the settings
(`RedisTargetError` names the bad one) and gives the key layout of the mode (`keys`).
In cluster mode the clients are redis-py's cluster clients (wire/cluster.py); the
gateway's pub/sub connections go to each primary (gateway/fanout/shards.py).

In sentinel mode the URL still says how to talk to the data nodes: ``rediss://`` for TLS
(spoken to the sentinels as well), the username and password, the database number; its
host and port are not used. The sentinels have credentials of their own. Following a
failover:

* every new connection asks the sentinels for the master, then checks with ROLE that the
  node it reached is one (a sentinel that has not seen the promotion yet names the old
  primary);
* an answer saying the node is no longer a master (``READONLY``: demoted) or lacks the
  replicas its ``min-replicas-to-write`` asks for (``NOREPLICAS``: what the old primary
  answers once its replica was promoted away from it) drops that connection, and the
  command fails: the next connection asks the sentinels again;
* ``follow()`` asks the sentinels, at most once a ``follow_interval``, where the master
  is; from then on a connection to another node is dropped before its next command and
  made again to the master. This matters because after Sentinel promotes a replica the
  old primary stays a writable master until Sentinel demotes it, about ten seconds later
  (killing its clients then), and whatever was written there meanwhile is lost.

Standard library and redis-py only (the Salt formulas ship this package to minions and
to the master): redis-py 4.3 or newer (Debian 12's python3-redis), which has the asyncio
client and `parse_url`.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.connection import SSLConnection as AsyncSSLConnection
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import SentinelManagedConnection as AsyncSentinelManagedConnection
from redis.backoff import NoBackoff
from redis.connection import SSLConnection, parse_url
from redis.retry import Retry
from redis.sentinel import SentinelManagedConnection

from wire import cluster
from wire.keys import Keys

log = logging.getLogger(__name__)

DEFAULT_URL = "redis://127.0.0.1:6379/0"
MODES = ("single", "sentinel", "cluster")
FOLLOW_INTERVAL = 1.0  # seconds between two questions to the sentinels from `follow`
SENTINEL_TIMEOUT = 1.0  # connecting to a sentinel, and its answer; the next is tried after


class RedisTargetError(ValueError):
    """Redis settings that cannot work; the message names the setting."""


class RedisSettingsLike(Protocol):
    """The settings `RedisTarget.of` reads (settings.RedisSettings has them)."""

    mode: str
    url: str
    sentinels: list[str]
    master_name: str
    sentinel_username: str
    sentinel_password: str
    cluster_nodes: list[str]


Address = tuple[str, int]


@dataclass(frozen=True)
class RedisTarget:
    """Where Tailgate's Redis is, checked: one node, or the master the sentinels name.

    `where` is how messages name the settings: ``redis.`` for conf/tailgate.yaml (so
    ``redis.sentinels``), a formula's pillar prefix for the agent and the engine."""

    mode: str = "single"
    url: str = DEFAULT_URL
    sentinels: Sequence[str] = ()  # host:port each (a comma-separated string is split)
    master_name: str = ""
    sentinel_username: str = ""
    sentinel_password: str = field(default="", repr=False)
    where: str = "redis."
    cluster_nodes: Sequence[str] = ()  # host:port seeds (cluster mode; a comma-separated string is split)

    def __post_init__(self) -> None:
        for name in ("sentinels", "cluster_nodes"):
            given = getattr(self, name)
            given = given.split(",") if isinstance(given, str) else given
            object.__setattr__(self, name, tuple(s.strip() for s in given if s.strip()))
        self._check()

    @classmethod
    def of(cls, conf: RedisSettingsLike, where: str = "redis.") -> RedisTarget:
        """The target the settings describe (raises RedisTargetError)."""
        return cls(
            conf.mode,
            conf.url,
            tuple(conf.sentinels),
            conf.master_name,
            conf.sentinel_username,
            conf.sentinel_password,
            where,
            tuple(conf.cluster_nodes),
        )

    def _check(self) -> None:
        w = self.where
        if self.mode not in MODES:
            raise RedisTargetError(f"{w}mode must be single, sentinel or cluster, not {self.mode!r}")
        try:
            parse_url(self.url)
        except ValueError as exc:
            raise RedisTargetError(f"{w}url: {exc}") from None
        if self.mode != "sentinel" and (self.sentinels or self.master_name):
            raise RedisTargetError(
                f"{w}sentinels and {w}master_name are set but {w}mode is {self.mode}: set {w}mode to sentinel "
                "to use them (the mode is never guessed)"
            )
        if self.mode != "cluster" and self.cluster_nodes:
            raise RedisTargetError(
                f"{w}cluster_nodes is set but {w}mode is {self.mode}: set {w}mode to cluster to use it "
                "(the mode is never guessed)"
            )
        if self.mode == "cluster":
            self.cluster_addresses()
            return
        if self.mode == "single":
            return
        if not self.sentinels:
            raise RedisTargetError(f"{w}mode is sentinel but {w}sentinels is empty: give each sentinel as host:port")
        if not self.master_name:
            raise RedisTargetError(
                f"{w}mode is sentinel but {w}master_name is empty: give the name the sentinels monitor the master by"
            )
        if urlsplit(self.url).scheme == "unix":
            raise RedisTargetError(f"{w}url: a unix socket cannot name the data nodes in sentinel mode")
        self.sentinel_addresses()

    @property
    def sentinel(self) -> bool:
        return self.mode == "sentinel"

    @property
    def cluster(self) -> bool:
        return self.mode == "cluster"

    def cluster_addresses(self) -> list[Address]:
        """The cluster seeds as (host, port); raises RedisTargetError naming a bad one."""
        try:
            return cluster.parse_nodes(list(self.cluster_nodes), self.where)
        except ValueError as exc:
            raise RedisTargetError(str(exc)) from None

    def keys(self, prefix: str) -> Keys:
        """The key layout of this mode under `prefix` (hash-tagged in cluster mode, which
        refuses a prefix with braces: RedisTargetError)."""
        try:
            return Keys(prefix, cluster=self.cluster)
        except ValueError as exc:
            raise RedisTargetError(f"{self.where}prefix: {exc}") from None

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "rediss"

    def sentinel_addresses(self) -> list[Address]:
        out = []
        for text in self.sentinels:
            host, sep, port = text.rpartition(":")
            host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1]:26379
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise RedisTargetError(f"{self.where}sentinels: {text!r} is not host:port")
            out.append((host, int(port)))
        return out

    def data_options(self) -> dict[str, Any]:
        """redis-py connection options for the data nodes in sentinel mode: the URL's
        credentials, database and TLS options, never its host or port."""
        options = parse_url(self.url)
        for key in ("host", "port", "path", "connection_class"):
            options.pop(key, None)
        return options

    def sentinel_options(self) -> dict[str, Any]:
        """redis-py connection options for the sentinels: their own credentials, and TLS
        (with the URL's TLS options) when the data nodes speak it."""
        options: dict[str, Any] = {
            "socket_timeout": SENTINEL_TIMEOUT,
            "socket_connect_timeout": SENTINEL_TIMEOUT,
            "username": self.sentinel_username or None,
            "password": self.sentinel_password or None,
        }
        if self.tls:
            options["ssl"] = True
            options.update((k, v) for k, v in self.data_options().items() if k.startswith("ssl_"))
        return options

    def describe(self) -> str:
        """For logs (no secret): the node, the cluster's seeds, or the master and its sentinels."""
        if self.cluster:
            return f"the Redis Cluster seeded by {', '.join(self.cluster_nodes)}"
        if not self.sentinel:
            parts = urlsplit(self.url)
            return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
        tls = " over TLS" if self.tls else ""
        return f"master {self.master_name!r} named by the sentinels {', '.join(self.sentinels)}{tls}"


@dataclass(frozen=True)
class Node:
    """Where one raw connection (the gateway's RESP pub/sub connection) goes, and how it
    logs in: a host and port, or a unix socket path; TLS (None: none); `master_only`:
    check ROLE."""

    host: str
    port: int
    path: str
    tls: ssl.SSLContext | None
    username: str | None
    password: str | None
    master_only: bool

    @property
    def address(self) -> Address:
        return self.host, self.port


def role_of(reply: Any) -> str:
    """The role in a ROLE reply: master, slave or sentinel."""
    role = reply[0] if isinstance(reply, (list, tuple)) and reply else reply
    return role.decode() if isinstance(role, bytes) else str(role)


def not_master_error(role: str, address: Address) -> redis.ConnectionError:
    """What a connection that reached a node that is no master raises."""
    return redis.ConnectionError(
        f"{address[0]}:{address[1]} is a {role}, not the master (a sentinel had not seen the failover yet)"
    )


def _tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    """TLS for a raw connection as redis-py makes it from the URL: its CA file
    (``ssl_ca_certs``, else the system's CAs) and client certificate, if given."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    return context


def _no_replicas(exc: redis.ResponseError) -> bool:
    return str(exc).startswith("NOREPLICAS")


class _MasterOf:
    """What a sentinel-managed connection asks for its address (the `connection_pool` it
    was written for): the master the connector names now."""

    is_master = True
    check_connection = False

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self.service_name = connector.target.master_name

    def get_master_address(self) -> Address:
        return self.connector.master()


class _AsyncMasterOf(_MasterOf):
    connector: AsyncConnector  # type: ignore[assignment]

    async def get_master_address(self) -> Address:  # type: ignore[override]
        return await self.connector.master()


class MasterConnection(SentinelManagedConnection):
    """A connection to whichever node the sentinels name master: checked with ROLE once
    connected, dropped when handed out again after the master moved (module docstring)."""

    connection_pool: _MasterOf

    def _check_role(self) -> None:
        self.send_command("ROLE", check_health=False)
        role = role_of(self.read_response())
        if role != "master":
            raise not_master_error(role, (self.host, self.port))

    if hasattr(redis.Connection, "on_connect_check_health"):  # redis-py 6 and later

        def on_connect_check_health(self, check_health: bool = True) -> None:
            super().on_connect_check_health(check_health)
            self._check_role()

    else:  # the redis-py of a minion or a master (Debian 12: 4.3)

        def on_connect(self) -> None:
            super().on_connect()
            self._check_role()

    def connect(self) -> None:
        # Every pool calls this as it hands the connection out: a connection still on a
        # node that is no longer the master goes, and this one asks the sentinels.
        if self._sock is not None and self.connection_pool.connector.moved_from((self.host, self.port)):
            self.disconnect()
        super().connect()

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except redis.ResponseError as exc:
            if not _no_replicas(exc):
                raise
            self.disconnect()
            raise redis.ConnectionError(f"{self.host}:{self.port} answered {exc}; asking the sentinels again") from None


class MasterTLSConnection(MasterConnection, SSLConnection):
    """`MasterConnection` over TLS (``rediss://``)."""


class AsyncMasterConnection(AsyncSentinelManagedConnection):
    """`MasterConnection` for asyncio."""

    connection_pool: _AsyncMasterOf

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        await super().on_connect_check_health(check_health)
        await self.send_command("ROLE", check_health=False)
        role = role_of(await self.read_response())
        if role != "master":
            raise not_master_error(role, (self.host, self.port))

    async def connect(self) -> None:
        if self.is_connected and self.connection_pool.connector.moved_from((self.host, self.port)):
            await self.disconnect()
        await super().connect()

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except redis.ResponseError as exc:
            if not _no_replicas(exc):
                raise
            await self.disconnect()
            raise redis.ConnectionError(f"{self.host}:{self.port} answered {exc}; asking the sentinels again") from None


class AsyncMasterTLSConnection(AsyncMasterConnection, AsyncSSLConnection):
    """`AsyncMasterConnection` over TLS (``rediss://``)."""


class _Follower:
    """The master last heard of from the sentinels, shared by a connector's connections."""

    def __init__(self, target: RedisTarget, follow_interval: float) -> None:
        self.target = target
        self.follow_interval = follow_interval
        if target.sentinel:
            log.info("redis: sentinel mode, the %s", target.describe())
        self._master: Address | None = None
        self._lock = threading.Lock()
        self._next_follow = 0.0
        self._unanswered = False  # the last `follow` found no master (said once, not every second)

    @property
    def sentinel(self) -> bool:
        return self.target.sentinel

    def moved_from(self, address: Address) -> bool:
        """Whether the master is known to be elsewhere than `address` now."""
        master = self._master
        return master is not None and master != address

    def _settle(self, address: Address) -> Address:
        with self._lock:
            before, self._master = self._master, address
        if before is not None and before != address:
            log.warning(
                "redis: the sentinels name %s:%d master of %r now (was %s:%d); following it",
                *address,
                self.target.master_name,
                *before,
            )
        return address

    def _named(self, sentinel: Address, answer: Any, why: list[str]) -> Address | None:
        """The master in one sentinel's SENTINEL MASTERS `answer` (or the error it gave),
        if it sees it up; else why not, added to `why` (no secret: redis-py's own error
        prints the connection's password)."""
        where = f"{sentinel[0]}:{sentinel[1]}"
        if isinstance(answer, Exception):
            why.append(f"{where}: {answer}")
            return None
        state = answer.get(self.target.master_name)
        if not state:
            why.append(f"{where} monitors no master named {self.target.master_name!r}")
        elif not state["is_master"] or state["is_sdown"] or state["is_odown"]:
            why.append(f"{where} sees the master {state['ip']}:{state['port']} down")
        else:
            return str(state["ip"]), int(state["port"])
        return None

    def _not_found(self, why: list[str]) -> redis.ConnectionError:
        return redis.ConnectionError(f"no sentinel names a master for {self.target.master_name!r}: {'; '.join(why)}")

    def _followed(self, failure: redis.RedisError | None) -> None:
        if failure is not None and not self._unanswered:
            log.warning("redis: no sentinel names the master of %r: %s", self.target.master_name, failure)
        elif failure is None and self._unanswered:
            log.info("redis: the sentinels name the master of %r again", self.target.master_name)
        self._unanswered = failure is not None

    def _due(self, at_once: bool) -> bool:
        now = time.monotonic()
        if not self.sentinel or (now < self._next_follow and not at_once):
            return False
        self._next_follow = now + self.follow_interval
        return True

    def _node(self, at: Address | None, master_only: bool) -> Node:
        """The URL's node (single mode), or `at` with the URL's credentials and TLS."""
        options = parse_url(self.target.url)
        host, port = at or (options.get("host", "127.0.0.1"), int(options.get("port", 6379)))
        return Node(
            host,
            port,
            "" if at else options.get("path", ""),
            _tls_context(options) if self.target.tls else None,
            options.get("username"),
            options.get("password"),
            master_only,
        )


class Connector(_Follower):
    """Builds a process's Redis clients (threads) over one target and keeps them on the
    master. `follow()` once a second or so is all a sentinel-mode caller adds."""

    def __init__(self, target: RedisTarget, follow_interval: float = FOLLOW_INTERVAL) -> None:
        super().__init__(target, follow_interval)
        self._pools: weakref.WeakSet[redis.ConnectionPool] = weakref.WeakSet()
        self._clusters: weakref.WeakSet[redis.RedisCluster] = weakref.WeakSet()
        # No retry: a sentinel that does not answer at once is skipped for the next one.
        options = {**target.sentinel_options(), "retry": Retry(NoBackoff(), 0)} if target.sentinel else {}
        self._sentinels = [(at, redis.Redis(host=at[0], port=at[1], **options)) for at in target.sentinel_addresses()]

    def client(
        self, name: str, pool_class: type[redis.ConnectionPool] = redis.ConnectionPool, **options: Any
    ) -> redis.Redis:
        """A client named `name` (CLIENT SETNAME) on a pool of `pool_class` with `options`;
        in cluster mode redis-py's cluster client with `options` (a pool per node, of
        `connection_pool_class` if given: `pool_class` is not used)."""
        if self.target.cluster:
            client = cluster.sync_client(self.target.url, list(self.target.cluster_nodes), client_name=name, **options)
            self._clusters.add(client)
            return client  # type: ignore[return-value]  # the same commands, routed per slot
        if not self.sentinel:
            pool = pool_class.from_url(self.target.url, client_name=name, **options)
        else:
            kind = MasterTLSConnection if self.target.tls else MasterConnection
            pool = pool_class(connection_class=kind, **{**self.target.data_options(), **options, "client_name": name})
            pool.connection_kwargs["connection_pool"] = _MasterOf(self)
        self._pools.add(pool)
        return redis.Redis(connection_pool=pool)

    def master(self) -> Address:
        """The master the sentinels name now (sentinel mode: the first that sees it up);
        raises redis.ConnectionError saying why when none does."""
        why: list[str] = []
        for at, sentinel in self._sentinels:
            try:
                answer = sentinel.sentinel_masters()
            except redis.RedisError as exc:
                answer = exc
            address = self._named(at, answer, why)
            if address is not None:
                return self._settle(address)
        raise self._not_found(why)

    def follow(self, at_once: bool = False) -> Address | None:
        """Sentinel mode: ask the sentinels where the master is (at most once a
        `follow_interval`, unless `at_once`); connections elsewhere are dropped before
        their next command. None when not asked, or when no sentinel answered."""
        if not self._due(at_once):
            return None
        try:
            master = self.master()
        except redis.RedisError as exc:
            self._followed(exc)
            return None
        self._followed(None)
        return master

    def close(self) -> None:
        """Disconnect every client built here, and the sentinels."""
        for pool in list(self._pools):
            pool.disconnect()
        for client in list(self._clusters):
            client.close()
        for _, sentinel in self._sentinels:
            sentinel.close()


class AsyncConnector(_Follower):
    """`Connector` for asyncio (the gateway): the same target and following, redis.asyncio
    clients, and `node()` for the gateway's own pub/sub connection."""

    def __init__(self, target: RedisTarget, follow_interval: float = FOLLOW_INTERVAL) -> None:
        super().__init__(target, follow_interval)
        self._pools: weakref.WeakSet[aioredis.ConnectionPool] = weakref.WeakSet()
        self._clusters: weakref.WeakSet[AsyncRedisCluster] = weakref.WeakSet()
        options = {**target.sentinel_options(), "retry": AsyncRetry(NoBackoff(), 0)} if target.sentinel else {}
        self._sentinels = [
            (at, aioredis.Redis(host=at[0], port=at[1], **options)) for at in target.sentinel_addresses()
        ]

    def client(
        self, name: str, pool_class: type[aioredis.ConnectionPool] = aioredis.ConnectionPool, **options: Any
    ) -> aioredis.Redis:
        """`Connector.client` for asyncio (in cluster mode, redis-py's asyncio cluster
        client: `pool_class` is not used, `max_connections` is per node)."""
        if self.target.cluster:
            client = cluster.async_client(self.target.url, list(self.target.cluster_nodes), client_name=name, **options)
            self._clusters.add(client)
            return client  # type: ignore[return-value]  # the same commands, routed per slot
        if not self.sentinel:
            pool = pool_class.from_url(self.target.url, client_name=name, **options)
        else:
            kind = AsyncMasterTLSConnection if self.target.tls else AsyncMasterConnection
            pool = pool_class(connection_class=kind, **{**self.target.data_options(), **options, "client_name": name})
            pool.connection_kwargs["connection_pool"] = _AsyncMasterOf(self)
        self._pools.add(pool)
        return aioredis.Redis(connection_pool=pool)

    async def master(self) -> Address:
        """`Connector.master`, awaited."""
        why: list[str] = []
        for at, sentinel in self._sentinels:
            try:
                answer = await sentinel.sentinel_masters()
            except redis.RedisError as exc:
                answer = exc
            address = self._named(at, answer, why)
            if address is not None:
                return self._settle(address)
        raise self._not_found(why)

    async def follow(self, at_once: bool = False) -> Address | None:
        """`Connector.follow`, awaited."""
        if not self._due(at_once):
            return None
        try:
            master = await self.master()
        except redis.RedisError as exc:
            self._followed(exc)
            return None
        self._followed(None)
        return master

    async def node(self) -> Node:
        """Where a raw connection goes now (the master, in sentinel mode; in cluster mode
        each primary is asked for: gateway/fanout/shards.py)."""
        if self.sentinel:
            return self._node(await self.master(), master_only=True)
        return self._node(None, master_only=False)

    def node_at(self, address: Address) -> Node:
        """A raw connection to the cluster node at `address`, with the URL's credentials and
        TLS (who owns which slots is asked with CLUSTER SLOTS, not ROLE)."""
        return self._node(address, master_only=False)

    async def aclose(self) -> None:
        """Disconnect every client built here, and the sentinels."""
        for pool in list(self._pools):
            await pool.disconnect()
        for client in list(self._clusters):
            await client.aclose()
        for _, sentinel in self._sentinels:
            await sentinel.aclose()
