"""A fleet for a test: gateway replicas behind HAProxy running conf/haproxy.cfg as shipped,
and viewers that resume through it the way the console does."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from embedded import free_port
from embedded.balancer import HAProxy
from tests.browser import numbered, restart_on_same_port
from tests.support import GatewayProc, Service

# What every replica gets: the balancer (on loopback) is its trusted proxy, and a drain
# grace above what the shipped health checks need to take a replica out (inter 1s, fall 2).
REPLICA_ENV = {
    "TAILGATE_SALT_MODE": "off",
    "TAILGATE_AUTH_TRUSTED_PROXIES": "127.0.0.1",
    "TAILGATE_GATEWAY_DRAIN_GRACE": "2.5",
}


class Fleet:
    """Replicas and their balancer; replicas are replaced in place (same port) on restart."""

    def __init__(self, replicas: list[GatewayProc], balancer: HAProxy, services: list[Any], log_dir: Path) -> None:
        self.replicas = replicas
        self.balancer = balancer
        self.services = services
        self.log_dir = log_dir

    @property
    def ports(self) -> list[int]:
        return [r.port for r in self.replicas]

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.balancer.port}/ws"

    def drain(self, i: int, timeout: float = 15.0) -> int:
        """SIGTERM replica `i` and wait for it to exit; its exit status."""
        self.replicas[i].signal(signal.SIGTERM)
        return self.replicas[i].wait(timeout)

    def restart(self, i: int) -> GatewayProc:
        """A new process on replica `i`'s port, once the old one is gone; ready, and UP in HAProxy."""
        self.replicas[i] = restart_on_same_port(self.replicas[i], self.services, self.log_dir)
        self.balancer.wait_servers([self.replicas[i].port])
        return self.replicas[i]


def start_replicas(n: int, env: dict[str, str], services: list[Any], log_dir: Path) -> list[GatewayProc]:
    """`n` ready replicas with REPLICA_ENV (what `env` does not say otherwise), booted in parallel."""
    replicas = [GatewayProc({**REPLICA_ENV, **env}, log_dir=log_dir) for _ in range(n)]
    for replica in replicas:
        services.append(replica)
        replica.start(wait=False)
    for replica in replicas:
        replica.wait_ready()
    return replicas


@pytest.fixture
def start_fleet(env: dict[str, str], services: list[Service], tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """start_fleet(n, **env overrides) -> a Fleet of `n` ready replicas, all UP in HAProxy."""
    fleets: list[Fleet] = []

    def start(n: int = 3, **overrides: str) -> Fleet:
        replicas = start_replicas(n, {**env, **overrides}, services, tmp_path)
        balancer = HAProxy(free_port(), [r.port for r in replicas], tmp_path).start()
        services.append(balancer)
        balancer.wait_servers([r.port for r in replicas])
        fleets.append(Fleet(replicas, balancer, services, tmp_path))
        return fleets[-1]

    yield start
    # Every replica drains for its grace: let them all do it at once (`services` then
    # stops what is left, one by one).
    for fleet in fleets:
        for replica in fleet.replicas:
            replica.signal(signal.SIGTERM)


class Resumer:
    """One viewer of one stream through the balancer. Whenever its connection ends it
    reconnects at once and resumes with `since` (its last line's id), as the console
    does; it keeps every line, every close code, and every handshake that failed."""

    def __init__(self, url: str, stream: str) -> None:
        self.url = url
        self.stream = stream
        self.lines: list[dict[str, Any]] = []
        self.notices: list[dict[str, Any]] = []  # gap, dropped, error: none is expected here
        self.closes: list[int | None] = []
        self.refused: list[str] = []
        self.subscribed = 0
        self.task: asyncio.Task[None] | None = None
        self.ws: websockets.ClientConnection | None = None

    def start(self) -> Resumer:
        self.task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            try:
                self.ws = ws = await websockets.connect(self.url, max_size=None, open_timeout=5)
            except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
                self.refused.append(repr(exc))
                await asyncio.sleep(0.1)
                continue
            since = self.lines[-1]["id"] if self.lines else "0-0"
            try:
                await ws.send(json.dumps({"op": "subscribe", "stream": self.stream, "since": since}))
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame["type"] == "lines":
                        self.lines.extend(frame["lines"])
                    elif frame["type"] == "subscribed":
                        self.subscribed += 1
                    elif frame["type"] in ("gap", "dropped", "error"):
                        self.notices.append(frame)
            except websockets.ConnectionClosed:
                pass
            self.closes.append(ws.close_code)

    def texts(self) -> list[str]:
        return [line["text"] for line in self.lines]

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.ws is not None:
            await self.ws.close()


async def start_viewers(url: str, stream: str, n: int) -> list[Resumer]:
    viewers = [Resumer(url, stream).start() for _ in range(n)]
    await until(lambda: all(v.subscribed for v in viewers), 15, "every viewer subscribed")
    return viewers


async def until(check: Any, timeout: float, what: str) -> None:
    """Wait (in the test's event loop) until `check()` is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def assert_every_line_once_in_order(viewers: list[Resumer], total: int) -> None:
    want = [numbered(i) for i in range(1, total + 1)]
    for n, viewer in enumerate(viewers):
        assert not viewer.notices, f"viewer {n}: {viewer.notices[:3]}"
        texts = viewer.texts()
        if texts != want:
            seen = set(texts)
            missing = [t for t in want if t not in seen][:5]
            doubled = len(texts) - len(seen)
            pytest.fail(f"viewer {n}: {len(texts)} lines, {doubled} doubled, missing e.g. {missing}")
