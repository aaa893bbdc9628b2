"""Test helpers: real service processes, a WebSocket client, waiting on conditions."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websockets

from embedded import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent


def service_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILGATE_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(overrides)
    return env


class Service:
    """A `python -m <module>` process with its own environment; output goes to a log file."""

    def __init__(
        self, module: str, env: dict[str, str], args: list[str] | None = None, log_dir: Path | None = None
    ) -> None:
        self.module = module
        self.env = env
        self.args = args or []
        self.log_path = (log_dir or Path("/tmp")) / f"{module}-{free_port()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 8.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class GatewayProc(Service):
    """A gateway process on a free port, ready when /readyz says so."""

    def __init__(self, env: dict[str, str], log_dir: Path | None = None) -> None:
        self.port = free_port()
        env = dict(env, TAILGATE_GATEWAY_PORT=str(self.port))
        super().__init__("gateway", env, log_dir=log_dir)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, timeout: float = 15.0) -> GatewayProc:
        super().start()
        wait_until(lambda: http_get(self.base + "/readyz")[0] == 200, timeout, what="gateway ready")
        return self


async def reader_that_stops(url: str, stream: str) -> websockets.ClientConnection:
    """A client subscribed to `stream` that then stops reading: websockets stops reading
    the socket once its one-frame queue is full, so TCP backs up into the gateway."""
    ws = await websockets.connect(url, max_queue=1, max_size=None)
    await ws.send(json.dumps({"op": "subscribe", "stream": stream}))
    assert json.loads(await ws.recv())["type"] == "subscribed"
    return ws


class WsClient:
    """A WebSocket client that sorts what it receives by frame type."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.lines: dict[str, list[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.closed_code: int | None = None

    @classmethod
    async def connect(cls, url: str, read: bool = True, **kwargs: Any) -> WsClient:
        ws = await websockets.connect(url, max_size=None, **kwargs)
        client = cls(ws)
        if read:
            client._reader = asyncio.create_task(client._read())
        return client

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                self.frames.append(msg)
                if msg.get("type") == "lines":
                    self.lines.setdefault(msg["stream"], []).extend(msg["lines"])
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed_code = self.ws.close_code

    async def send(self, obj: Any) -> None:
        await self.ws.send(obj if isinstance(obj, str) else json.dumps(obj))

    async def subscribe(self, stream: str, wait: bool = True, **fields: Any) -> None:
        before = len(self.frames)
        await self.send({"op": "subscribe", "stream": stream, **fields})
        if wait:
            await self.wait_for(
                lambda: any(
                    f.get("stream") == stream and f.get("type") in ("subscribed", "error") for f in self.frames[before:]
                ),
                what=f"subscribed to {stream}",
            )

    async def wait_for(self, check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                last = [json.dumps(f)[:300] for f in self.frames[-3:]]
                raise TimeoutError(f"timed out waiting for {what}; last frames: {last}")
            await asyncio.sleep(0.01)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == kind]

    def texts(self, stream: str) -> list[str]:
        return [line["text"] for line in self.lines.get(stream, [])]

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await self._reader


def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def produce(
    bootstrap: str,
    topic: str,
    values: list[bytes],
    keys: list[bytes | None] | None = None,
    partition: int | None = None,
) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    try:
        for i, value in enumerate(values):
            producer.send(topic, value=value, key=keys[i] if keys else None, partition=partition)
        producer.flush()
    finally:
        producer.close()
