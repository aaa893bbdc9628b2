"""The Redis Cluster the cluster tests share: three primaries, three replicas, on loopback.

Tests that move slots or kill primaries leave the cluster healthy (every slot served) but
not as it started; each test finds owners through `RedisClusterNodes.owner`, never assumes them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from embedded import RedisClusterNodes
from wire import Keys
from wire.cluster import sync_client


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    nodes = RedisClusterNodes(workdir=str(tmp_path_factory.mktemp("cluster"))).start()
    yield nodes
    nodes.stop()


@pytest.fixture
def ckeys() -> Keys:
    return Keys(f"t{uuid.uuid4().hex[:8]}:", cluster=True)


@pytest.fixture
def cclient(redis_cluster: RedisClusterNodes) -> Iterator[redis.RedisCluster]:
    client = sync_client("redis://", redis_cluster.seeds)
    yield client
    client.close()


@pytest.fixture
def cluster_env(redis_cluster: RedisClusterNodes, ckeys: Keys) -> dict[str, str]:
    from tests.support import service_env

    return service_env(
        TAILGATE_REDIS_MODE="cluster",
        TAILGATE_REDIS_CLUSTER_NODES=",".join(redis_cluster.seeds),
        TAILGATE_REDIS_PREFIX=ckeys.prefix,
    )
