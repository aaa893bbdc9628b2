"""Redis Cluster clients for every component, from the seeds and the URL's credentials.

The mode is chosen by setting (`redis.mode: cluster`), never guessed: wire/connect.py
decides and checks it and builds every client through these. Seeds are ``host:port``
strings (`redis.cluster_nodes`); the credentials, TLS and client options come from
`redis.url` as for one node (its host, port and database are not used: a cluster has
database 0 only). redis-py's cluster
clients learn the slot map from a seed, send each command to the slot's primary and
follow MOVED and ASK while slots migrate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import ClusterNode
from redis.connection import parse_url
from redis.retry import Retry


def parse_nodes(nodes: list[str], where: str = "redis.") -> list[tuple[str, int]]:
    """``host:port`` seeds as pairs; raises ValueError naming a bad one (`where`: how the
    settings are named, as in wire.connect)."""
    out = []
    for node in nodes:
        host, sep, port = node.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{where}cluster_nodes: {node!r} is not host:port")
        out.append((host.strip("[]"), int(port)))
    if not out:
        raise ValueError(f"{where}mode is cluster but {where}cluster_nodes names no node")
    return out


def connection_options(url: str) -> dict[str, Any]:
    """What a cluster connection takes from `url`: credentials and TLS."""
    opts = parse_url(url)
    keep = {k: opts[k] for k in ("username", "password") if opts.get(k)}
    if url.startswith("rediss://"):
        keep["ssl"] = True
    return keep


def _retry(retry_class: type[Any]) -> Any:
    # redis-py waits up to 1 s (then 2, 4...) before retrying after MOVED or a lost node;
    # a slot that moved is served at once by its new owner, so retry sooner.
    return retry_class(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=3)


def sync_client(url: str, nodes: list[str], **options: Any) -> redis.RedisCluster:
    """A blocking cluster client (the bridge, the tail agent, the Salt engine)."""
    seeds = [ClusterNode(host, port) for host, port in parse_nodes(nodes)]
    options.setdefault("retry", _retry(Retry))
    return redis.RedisCluster(startup_nodes=seeds, **connection_options(url), **options)


def async_client(url: str, nodes: list[str], **options: Any) -> aioredis.RedisCluster:
    """An asyncio cluster client (the gateway's commands and history reads)."""
    seeds = [AsyncClusterNode(host, port) for host, port in parse_nodes(nodes)]
    options.setdefault("retry", _retry(AsyncRetry))
    # redis-py 7.0's asyncio cluster MULTI drops, without returning it to its node's pool, a
    # connection that failed; a pool so drained raises MaxConnectionsError, which never
    # reads the slot map again, so a failed-over node's reads would fail for good. Reading
    # the map after every connection error or MOVED makes every node (and pool) afresh.
    options.setdefault("reinitialize_steps", 1)
    client = aioredis.RedisCluster(startup_nodes=seeds, **connection_options(url), **options)
    # redis-py 7.0's asyncio cluster MULTI (the gateway's history reads) hands its reply
    # parsers a `keys` option they do not take (TypeError); its other paths drop it first.
    callbacks = client.response_callbacks
    for name, parse in list(callbacks.items()):
        callbacks[name] = _without_keys(parse)
    return client


def _without_keys(parse: Callable[..., Any]) -> Callable[..., Any]:
    def call(response: Any, **options: Any) -> Any:
        options.pop("keys", None)
        return parse(response, **options)

    return call
