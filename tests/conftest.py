"""Session fixtures: a real redis-server and the embedded Kafka broker on free ports."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from embedded import KafkaBroker, RedisServer
from tests.support import GatewayProc, Service, service_env


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(workdir=str(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(log_path=str(tmp_path_factory.mktemp("kafka") / "tansu.log")).start()
    yield broker
    broker.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own, so tests sharing one Redis never see each other."""
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def rclient(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def env(redis_server: RedisServer, prefix: str) -> dict[str, str]:
    return service_env(TAILGATE_REDIS_URL=redis_server.url, TAILGATE_REDIS_PREFIX=prefix)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[Service]]:
    """Processes a test starts; all stopped at its end, whatever happened."""
    started: list[Service] = []
    yield started
    for svc in reversed(started):
        svc.stop()


@pytest.fixture
def start_gateway(env: dict[str, str], services: list[Service], tmp_path: Path):
    def start(**overrides: str) -> GatewayProc:
        gw = GatewayProc(dict(env, **overrides), log_dir=tmp_path)
        services.append(gw)
        return gw.start()

    return start
