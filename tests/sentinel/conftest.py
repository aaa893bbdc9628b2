"""A primary, a replica and three Sentinels per test (embedded.sentinel), and the pieces
that run against them: the services' environment, a gateway with a viewer, a writer
through wire.connect, a tail agent process, a file writer."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis
import yaml

from embedded.sentinel import SentinelGroup
from tests.support import ROOT, GatewayProc, Service, WsClient, self_signed, service_env
from wire import Keys, Line, Publisher, StreamBatch, encode_line
from wire.connect import Connector, RedisTarget

AGENT = ROOT / "salt_states" / "logtail" / "files" / "logtail_agent.py"


@pytest.fixture
def sentinel_group(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SentinelGroup]:
    """One primary, one replica and three Sentinels; an indirect parameter gives other
    SentinelGroup arguments (say two replicas, or `tls: True`)."""
    options = {"password": "data-secret", "sentinel_password": "sentinel-secret", **getattr(request, "param", {})}
    if options.get("tls"):  # True: TLS only, with a certificate made here
        options["tls"] = self_signed(tmp_path, "redis")
    group = SentinelGroup(tmp_path / "sentinel", **options)
    try:
        yield group.start()
    finally:
        group.stop()


@pytest.fixture
def sentinel_env(sentinel_group: SentinelGroup, prefix: str) -> dict[str, str]:
    """A gateway's or bridge's environment in sentinel mode, file streams off."""
    return service_env(**sentinel_group.env(), TAILGATE_REDIS_PREFIX=prefix, TAILGATE_SALT_MODE="off")


Watched = Callable[[str], Awaitable[tuple[GatewayProc, WsClient]]]


@pytest.fixture
def watched(sentinel_env: dict[str, str], services: list[Service], tmp_path: Path) -> Watched:
    """watched(stream) -> a gateway in sentinel mode, and a viewer of `stream` on it."""

    async def start(stream: str) -> tuple[GatewayProc, WsClient]:
        gateway = GatewayProc(sentinel_env, log_dir=tmp_path)
        services.append(gateway)
        gateway.start()
        viewer = await WsClient.connect(gateway.ws_url)
        await viewer.subscribe(stream)
        return gateway, viewer

    return start


class SentinelPublisher(threading.Thread):
    """Publishes 'n <i>' every few ms through a `wire.connect.Connector`, as the tail agent
    and the engine do; a refused publish (NOREPLICAS from the old primary, or no master
    named yet) is tried again, never skipped."""

    def __init__(self, group: SentinelGroup, prefix: str, stream: str) -> None:
        super().__init__(daemon=True)
        target = RedisTarget(
            "sentinel",
            group.env()["TAILGATE_REDIS_URL"],
            group.sentinels,
            group.master_name,
            sentinel_password=group.sentinel_password,
        )
        self.redis = Connector(target)
        self.pub = Publisher(self.redis.client("test-publisher", socket_timeout=2), Keys(prefix))
        self.stream = stream
        self.published = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.005):
            self.redis.follow()
            line = encode_line(Line(time.time(), f"n {self.published:05d}"))
            try:
                self.pub.publish([StreamBatch(self.stream, [(0, line)])])
            except redis.RedisError:
                continue
            self.published += 1

    def stop(self) -> int:
        self.done.set()
        self.join(5)
        self.redis.close()
        return self.published


class Agent:
    """The tail agent the logtail formula deploys, run straight from salt_states/ with a
    config rendered from the formula's defaults.yaml and the group's sentinel settings."""

    minion = "sentinel-test"

    def __init__(self, group: SentinelGroup, prefix: str, base: Path) -> None:
        self.path = base / "logs" / "app.log"
        self.path.parent.mkdir(parents=True)
        self.path.touch()
        defaults = yaml.safe_load((ROOT / "salt_states" / "logtail" / "defaults.yaml").read_text())["logtail"]
        conf = {
            **defaults,
            "redis_mode": "sentinel",
            "redis_url": group.env()["TAILGATE_REDIS_URL"],
            "redis_sentinels": group.sentinels,
            "redis_master_name": group.master_name,
            "redis_sentinel_password": group.sentinel_password,
            "key_prefix": prefix,
            "allowlist": [f"{self.path.parent}/**"],
            "run_dir": str(base / "run"),
            "log_dir": str(base / "log"),
            "initial_lines": 100_000,  # whatever was written before it started
            "poll_interval": 0.02,
        }
        self.config = base / "logtail.json"
        self.config.write_text(json.dumps(conf))
        self.log = base / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Agent:
        args = [sys.executable, str(AGENT), "--config", str(self.config), "--minion-id", self.minion]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*args, "--path", str(self.path)], env=service_env(), stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def agent(sentinel_group: SentinelGroup, prefix: str, tmp_path: Path) -> Iterator[Agent]:
    started = Agent(sentinel_group, prefix, tmp_path / f"agent-{uuid.uuid4().hex[:6]}")
    try:
        yield started
    finally:
        started.stop()


class Writer(threading.Thread):
    """Appends numbered lines to a file at about `rate` a second; once `pause()` returns
    (with the count written) no line is written until `resume()`."""

    def __init__(self, path: Path, rate: float) -> None:
        super().__init__(daemon=True)
        self.path, self.interval = path, 1.0 / rate
        self.written = 0
        self.paused = False
        self.lock = threading.Lock()
        self.done = threading.Event()

    def run(self) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            while not self.done.wait(self.interval):
                with self.lock:
                    if not self.paused:
                        fh.write(f"f {self.written:05d}\n")
                        fh.flush()
                        self.written += 1

    def pause(self) -> int:
        with self.lock:
            self.paused = True
            return self.written

    def resume(self) -> None:
        with self.lock:
            self.paused = False

    def stop(self) -> int:
        self.done.set()
        self.join(5)
        return self.written
