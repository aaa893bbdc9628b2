"""wire.connect: the settings that name Tailgate's Redis are checked, with messages naming
the setting, and turn into the connections each mode needs."""

from __future__ import annotations

import re

import pytest
import redis

from wire.connect import (
    AsyncMasterTLSConnection,
    Connector,
    MasterConnection,
    MasterTLSConnection,
    RedisTarget,
    RedisTargetError,
)

SENTINELS = ("10.0.0.4:26379", "[::1]:26380")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"mode": "cluster"}, "redis.mode is cluster but redis.cluster_nodes names no node"),
        ({"mode": "cluster", "cluster_nodes": "10.0.0.1"}, "redis.cluster_nodes: '10.0.0.1' is not host:port"),
        ({"mode": "sentinels"}, "redis.mode must be single, sentinel or cluster, not 'sentinels'"),
        ({"cluster_nodes": ("10.0.0.1:7000",)}, "redis.cluster_nodes is set but redis.mode is single"),
        (
            {"mode": "sentinel", "sentinels": SENTINELS, "master_name": "tg", "cluster_nodes": ("10.0.0.1:7000",)},
            "redis.cluster_nodes is set but redis.mode is sentinel",
        ),
        (
            {"mode": "cluster", "cluster_nodes": ("10.0.0.1:7000",), "sentinels": SENTINELS},
            "redis.sentinels and redis.master_name are set but redis.mode is cluster",
        ),
        ({"mode": "sentinel", "master_name": "tg"}, "redis.mode is sentinel but redis.sentinels is empty"),
        ({"mode": "sentinel", "sentinels": SENTINELS}, "redis.mode is sentinel but redis.master_name is empty"),
        ({"mode": "sentinel", "sentinels": ("10.0.0.4",), "master_name": "tg"}, "'10.0.0.4' is not host:port"),
        ({"mode": "sentinel", "sentinels": ("h:0",), "master_name": "tg"}, "'h:0' is not host:port"),
        ({"sentinels": SENTINELS}, "redis.sentinels and redis.master_name are set but redis.mode is single"),
        ({"url": "http://redis:6379"}, "redis.url: Redis URL must specify one of the following schemes"),
        (
            {"mode": "sentinel", "sentinels": SENTINELS, "master_name": "tg", "url": "unix:///run/redis.sock"},
            "redis.url: a unix socket cannot name the data nodes in sentinel mode",
        ),
    ],
)
def test_settings_that_name_no_redis_are_refused_naming_the_setting(given: dict, message: str) -> None:
    with pytest.raises(RedisTargetError, match=re.escape(message)):
        RedisTarget(**given)


@pytest.mark.unit
def test_messages_name_the_settings_where_they_come_from() -> None:
    with pytest.raises(RedisTargetError, match=r"^logtail:redis_mode is sentinel but logtail:redis_sentinels is empty"):
        RedisTarget("sentinel", master_name="tg", where="logtail:redis_")


@pytest.mark.unit
def test_sentinel_mode_takes_the_urls_credentials_database_and_tls_but_not_its_host() -> None:
    target = RedisTarget(
        "sentinel",
        "rediss://tailgate:data%2Fpw@ignored.example:1/3?ssl_ca_certs=/etc/ca.pem",
        "10.0.0.4:26379, [::1]:26380",  # as TAILGATE_REDIS_SENTINELS gives it
        "tg",
        "watcher",
        "sentinel-pw",
    )
    assert target.sentinel_addresses() == [("10.0.0.4", 26379), ("::1", 26380)]
    data = {"username": "tailgate", "password": "data/pw", "db": 3, "ssl_ca_certs": "/etc/ca.pem"}
    assert target.data_options() == data
    sentinel = target.sentinel_options()
    assert (sentinel["username"], sentinel["password"], sentinel["ssl"]) == ("watcher", "sentinel-pw", True)
    assert sentinel["ssl_ca_certs"] == "/etc/ca.pem"
    assert "pw" not in target.describe() and "10.0.0.4:26379" in target.describe() and "TLS" in target.describe()
    assert "sentinel-pw" not in repr(target)


@pytest.mark.unit
def test_each_mode_builds_its_own_connections() -> None:
    single = Connector(RedisTarget(url="redis://:pw@10.0.0.9:6380/2")).client("c")
    assert single.connection_pool.connection_class is redis.Connection
    assert single.connection_pool.connection_kwargs["host"] == "10.0.0.9"
    plain = Connector(RedisTarget("sentinel", "redis://:pw@x:1/0", SENTINELS, "tg")).client("c")
    assert plain.connection_pool.connection_class is MasterConnection
    assert "host" not in plain.connection_pool.connection_kwargs  # the sentinels say where
    tls = Connector(RedisTarget("sentinel", "rediss://:pw@x:1/0", SENTINELS, "tg")).client("c")
    assert tls.connection_pool.connection_class is MasterTLSConnection
    assert issubclass(AsyncMasterTLSConnection, redis.asyncio.connection.SSLConnection)
