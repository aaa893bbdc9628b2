"""Test helpers: real service processes, a WebSocket client, waiting on conditions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import redis
import websockets
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from embedded import free_port, wait_until
from wire import Keys, Line, Publisher, StreamBatch, encode_line

ROOT = Path(__file__).resolve().parent.parent


def service_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILGATE_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(overrides)
    return env


class Service:
    """A `python -m <module>` process with its own environment; output goes to a log file."""

    def __init__(
        self,
        module: str,
        env: dict[str, str],
        args: list[str] | None = None,
        log_dir: Path | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.module = module
        self.env = env
        self.args = args or []
        self.log_path = (log_dir or Path("/tmp")) / f"{module}-{free_port()}.log"
        self.preexec = preexec  # runs in the child before the module (e.g. to lower a resource limit)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=self.preexec,
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


def metric(gw: GatewayProc, sample: str, label: str | None = None) -> float:
    """A gateway's current value of a metric sample, 0 when absent: the exact sample
    (`name` or `name{labels}`), or with `label`, the first series of `name` whose labels
    hold it."""
    for line in http_get(gw.base + "/metrics")[1].decode().splitlines():
        series, _, value = line.rpartition(" ")
        if series == sample if label is None else (series.startswith(sample + "{") and label in series):
            return float(value)
    return 0.0


class NumberedPublisher(threading.Thread):
    """Publishes 'n <i>' lines every few ms, retrying through Redis outages like a producer would.

    `hold()` makes it finish the publish in hand and wait, so the test can stop Redis
    between two publishes: a publish cut off mid-reply would be retried and doubled by
    the producer itself, which is not what these tests are about."""

    def __init__(self, url: str, prefix: str, stream: str) -> None:
        super().__init__(daemon=True)
        self.pub = Publisher(redis.Redis.from_url(url, socket_timeout=2), Keys(prefix))
        self.stream = stream
        self.stop = threading.Event()
        self.held = threading.Event()
        self.idle = threading.Event()
        self.published = 0

    def hold(self) -> None:
        self.idle.clear()
        self.held.set()
        assert self.idle.wait(5), "the publisher did not pause"

    def release(self) -> None:
        self.held.clear()

    def publish_now(self, count: int = 1, pad: int = 0) -> None:
        """While held: publish the next `count` lines in one publish step (one live message)."""
        texts = [f"n {self.published + i}" + (" " + "p" * pad if pad else "") for i in range(count)]
        self.pub.publish([StreamBatch(self.stream, [(0, encode_line(Line(time.time(), t))) for t in texts])])
        self.published += count

    def run(self) -> None:
        while not self.stop.is_set():
            if self.held.is_set():
                self.idle.set()
                self.stop.wait(0.003)
                continue
            line = encode_line(Line(time.time(), f"n {self.published}"))
            try:
                self.pub.publish([StreamBatch(self.stream, [(0, line)])])
                self.published += 1
            except redis.ConnectionError:
                pass
            self.stop.wait(0.003)


def assert_gateway_connections(rclient: redis.Redis, history_connections: int = 4) -> None:
    """One gateway's Redis connections, whatever its number of clients and streams: one
    pub/sub, one command connection, at most `gateway.history_connections` for history."""
    names = [c.get("name", "") for c in rclient.client_list() if c.get("name", "").startswith("tailgate-gateway")]
    assert names.count("tailgate-gateway-pubsub") == 1, names
    assert names.count("tailgate-gateway-cmd") <= 1, names
    assert names.count("tailgate-gateway-history") <= history_connections, names
    assert set(names) <= {"tailgate-gateway-pubsub", "tailgate-gateway-cmd", "tailgate-gateway-history"}, names


class GatewayProc(Service):
    """A gateway process on a free port, ready when /readyz says so."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path | None = None,
        preexec: Callable[[], None] | None = None,
        module: str = "gateway",
    ) -> None:
        self.port = free_port()
        env = dict(env, TAILGATE_GATEWAY_PORT=str(self.port))
        super().__init__(module, env, log_dir=log_dir, preexec=preexec)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, timeout: float = 15.0, wait: bool = True) -> GatewayProc:
        super().start()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 15.0) -> GatewayProc:
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


class TlsProxy:
    """A TLS-terminating TCP proxy on a thread of its own: clients speak TLS to `port`, the
    bytes go on in the clear to `target_port`. Stands in for a Kafka listener with TLS,
    which the embedded broker does not offer (it advertises the proxy's port instead)."""

    def __init__(self, target_port: int, certfile: Path, keyfile: Path) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certfile, keyfile)
        # No TLS 1.3 session tickets: kafka-python closes a connection that reads one while
        # no request is in flight (dpkp/kafka-python#2369), and would then reconnect; a
        # test wants every connection to hold.
        self.context.num_tickets = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tls-proxy", daemon=True)

    def start(self) -> TlsProxy:
        self.thread.start()
        serve = asyncio.start_server(self._client, "127.0.0.1", self.port, ssl=self.context)
        self.server = asyncio.run_coroutine_threadsafe(serve, self.loop).result(10)
        return self

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, ssl.SSLError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def stop(self) -> None:
        async def shut() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the openssl command."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    args = ["-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"]
    args += ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(["openssl", "req", *args], check=True, capture_output=True)
    return cert, key


# Authentication helpers shared by the gateway, console and Salt tests.
SECRET = "integration-" + "k" * 40
AUTH_ENV = {"TAILGATE_AUTH_SECRET": SECRET, "TAILGATE_AUTH_LEEWAY": "0", "TAILGATE_SALT_MODE": "off"}


def token(streams: tuple[str, ...] = ("kafka:a*",), sub: str = "alice", ttl: float = 600, key: Any = SECRET,
          alg: str = "HS256", **extra: Any) -> str:  # fmt: skip
    claims = {"sub": sub, "streams": list(streams), "exp": int(time.time() + ttl), **extra}
    return jwt.encode(claims, key, algorithm=alg)


def http(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def audit_records(gw: GatewayProc) -> list[dict[str, Any]]:
    """The audit lines a gateway has logged so far, parsed."""
    out = []
    for line in gw.output().splitlines():
        _, sep, body = line.partition("tailgate.audit: ")
        if sep:
            out.append(json.loads(body))
    return out


# Strict JSON, as a browser takes it (issue 12: text is canonical past wire/).
_SURROGATE = re.compile("[\ud800-\udfff]")


def strict_loads(raw: str | bytes) -> Any:
    """Parse as a strict JSON parser does (a browser's JSON.parse, then UTF-8 text): no
    NaN or Infinity token, no number too large for a double, no lone surrogate."""

    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    def finite(literal: str) -> float:
        value = float(literal)
        if value - value != 0:
            raise ValueError(f"{literal} does not fit a double")
        return value

    obj = json.loads(raw, parse_constant=refuse, parse_float=finite)
    if _SURROGATE.search(json.dumps(obj, ensure_ascii=False)):
        raise ValueError("a lone surrogate")
    return obj


class Viewer:
    """A /ws client on a thread of its own that keeps every frame it receives as text."""

    def __init__(self, url: str, stream: str, **fields: Any) -> None:
        self.stream = stream
        self.ws: ClientConnection = connect(url, max_size=None)
        self.frames: list[str] = []
        self.close_code: int | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        self.ws.send(json.dumps({"op": "subscribe", "stream": stream, **fields}))
        wait_until(lambda: self._typed("subscribed") or self._typed("error"), 10, what=f"subscribed to {stream}")

    def _read(self) -> None:
        try:
            for raw in self.ws:
                self.frames.append(raw if isinstance(raw, str) else raw.decode())
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code

    def _parsed(self) -> list[dict[str, Any]]:
        out = []
        for raw in list(self.frames):
            with contextlib.suppress(ValueError):  # a frame a strict parser refuses: see not_strict
                out.append(json.loads(raw))
        return out

    def _typed(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self._parsed() if f.get("type") == kind]

    def lines(self) -> list[dict[str, Any]]:
        return [line for f in self._typed("lines") for line in f["lines"]]

    def texts(self) -> list[str]:
        return [line["text"] for line in self.lines()]

    def not_strict(self) -> list[str]:
        """The frames a strict JSON parser refuses (what a browser would lose)."""
        bad = []
        for raw in list(self.frames):
            try:
                strict_loads(raw)
            except ValueError:
                bad.append(raw[:200])
        return bad

    def close(self) -> None:
        self.ws.close()
        self._thread.join(5)
