"""Session fixtures: a real redis-server and the embedded Kafka broker on free ports."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from embedded import KafkaBroker, RedisServer
from tests.support import GatewayProc, Service, service_env

# The browser fixtures (browser, page, pub) live beside the browser helpers.
pytest_plugins = ["tests.browser"]


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


# --- Bridge tests (issue 3) -------------------------------------------------------------


@pytest.fixture
def bridge_env(env: dict[str, str], kafka: KafkaBroker, tmp_path: Path) -> dict[str, str]:
    """A bridge process's environment: its own (empty) config file rather than the
    repository's default, the session broker, a consumer group of its own, no metrics
    port, quick group joins and metadata refreshes, history never trimmed."""
    config = tmp_path / "bridge-defaults.yaml"
    config.write_text("bridge: {}\n")
    return dict(
        env,
        TAILGATE_CONFIG=str(config),
        TAILGATE_KAFKA_BOOTSTRAP=kafka.bootstrap,
        TAILGATE_BRIDGE_GROUP_ID=f"g{uuid.uuid4().hex[:8]}",
        TAILGATE_BRIDGE_METRICS_PORT="0",
        TAILGATE_BRIDGE_REFRESH_INTERVAL="1",
        TAILGATE_KAFKA_MAX_POLL_INTERVAL_MS="3000",
        TAILGATE_KAFKA_SESSION_TIMEOUT_MS="6000",
        TAILGATE_KAFKA_HEARTBEAT_INTERVAL_MS="500",
        TAILGATE_REDIS_HISTORY_MAXLEN="1000000",
    )


@pytest.fixture
def start_bridge(bridge_env: dict[str, str], services: list[Service], tmp_path: Path):
    """start_bridge(*args, **env overrides) -> a running `python -m bridge` Service."""

    def start(*args: str, **overrides: str) -> Service:
        svc = Service("bridge", dict(bridge_env, **overrides), args=list(args), log_dir=tmp_path)
        services.append(svc)
        return svc.start()

    return start


@pytest.fixture
def history(rclient: redis.Redis, prefix: str):
    """history(stream, client=None) -> the line objects in a stream's Redis history."""
    import json

    from wire import Keys

    def read(stream: str, client: redis.Redis | None = None) -> list[dict]:
        entries = (client or rclient).xrange(Keys(prefix).hist(stream))
        return [json.loads(b"{" + fields[b"d"] + b"}") for _, fields in entries]

    return read


# --- Salt (issue 5): a real salt-master and salt-minion on loopback, once per session ---


class SaltSession:
    """The session's master+minion with the logtail formula applied, and what tests need
    to know about it: the directory both allowlists permit, the agents' key prefix, the
    short grace period, lease and wait for a missing file the tests run with, where agents
    keep their locks."""

    grace = 3.0
    wanted_ttl = 3.0
    late_file_wait = 3.0

    def __init__(self, pair, base: Path, redis_url: str) -> None:
        self.pair = pair
        self.logs = base / "logs"
        self.run_dir = base / "minion" / "run"
        self.install_dir = base / "minion" / "agent"
        self.redis_url = redis_url
        self.prefix = f"tsalt{uuid.uuid4().hex[:6]}:"

    def gateway_env(self, **overrides: str) -> dict[str, str]:
        env = {
            "TAILGATE_REDIS_URL": self.redis_url,
            "TAILGATE_REDIS_PREFIX": self.prefix,
            "TAILGATE_SALT_MODE": "local",
            "TAILGATE_SALT_MASTER_CONFIG": self.pair.master_config,
            "TAILGATE_SALT_WANTED_TTL": str(self.wanted_ttl),
            "TAILGATE_GATEWAY_FILE_ALLOWLIST": f"{self.logs}/**",
        }
        return service_env(**dict(env, **overrides))


@pytest.fixture(scope="session")
def salt_session(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaltSession]:
    from embedded.salt import SaltPair, logtail_pillar, salt_available

    why = salt_available()
    if why:
        pytest.fail(f"the Salt tests need a local master and minion: {why}")
    base = tmp_path_factory.mktemp("salt")
    session = SaltSession(None, base, redis_server.url)
    session.logs.mkdir()
    pillar = logtail_pillar(
        redis_server.url, session.prefix, base / "minion", [f"{session.logs}/**"], grace_period=SaltSession.grace
    )
    pillar["late_file_wait"] = SaltSession.late_file_wait
    pair = SaltPair(pillar, minion_id="tailgate-test-minion", workdir=str(base / "salt"))
    session.pair = pair
    try:
        pair.start()
        pair.apply()
        yield session
    finally:
        with contextlib.suppress(Exception):  # best effort: agents also end on their own after the grace
            pair.call("logtail.stop_all", timeout=10)
        pair.cleanup()
