"""The Redis mode is a setting, never guessed: one that names no Redis stops the gateway
and the bridge at start (exit 2, the setting named), and a connection the sentinels'
stale answer sends to a replica is refused rather than used."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis

from embedded.sentinel import SentinelGroup
from tests.support import ROOT, service_env
from wire.connect import Connector, RedisTarget

SENTINEL_ONLY = {"TAILGATE_REDIS_MODE": "sentinel", "TAILGATE_REDIS_MASTER_NAME": "tailgate"}


@pytest.mark.parametrize("component", ["gateway", "bridge"])
@pytest.mark.parametrize(
    ("env", "message"),
    [
        (SENTINEL_ONLY, "redis.mode is sentinel but redis.sentinels is empty"),
        ({"TAILGATE_REDIS_MODE": "cluster"}, "redis.mode is cluster but redis.cluster_nodes names no node"),
        (
            {**SENTINEL_ONLY, "TAILGATE_REDIS_SENTINELS": "127.0.0.1:1", "TAILGATE_REDIS_CLUSTER_NODES": "127.0.0.1:2"},
            "redis.cluster_nodes is set but redis.mode is sentinel",
        ),
    ],
)
def test_a_redis_that_cannot_be_named_fails_the_start(component: str, env: dict[str, str], message: str) -> None:
    args = ["--port", "0"] if component == "gateway" else ["--topics", "t", "--metrics-port", "0"]
    proc = subprocess.run(
        [sys.executable, "-m", component, *args],
        cwd=ROOT,
        env=service_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{component}: configuration error: {message}" in proc.stderr


def test_a_connection_that_reaches_a_replica_is_refused(sentinel_group: SentinelGroup) -> None:
    group = sentinel_group
    target = RedisTarget(
        "sentinel", group.env()["TAILGATE_REDIS_URL"], group.sentinels, group.master_name, "", group.sentinel_password
    )
    connector = Connector(target)
    client = connector.client("role-check", socket_timeout=2)
    assert client.set("k", "v")  # the master the sentinels name
    replica = next(n for n in group.nodes if n.port != group.master().port)
    connector.master = lambda: ("127.0.0.1", replica.port)  # a sentinel that has not seen a failover yet
    client.connection_pool.disconnect()
    with pytest.raises(redis.ConnectionError, match=f"127.0.0.1:{replica.port} is a slave, not the master"):
        client.get("k")
    connector.close()
