"""Faults and lifecycle of a real gateway: Redis restarts, slow clients, draining."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import websockets

from embedded import RedisServer
from tests.support import GatewayProc, Service, WsClient, http_get, reader_that_stops, service_env
from wire import Keys, Line, Publisher, StreamBatch, encode_line


@pytest.fixture(params=[False, True], ids=["no-persistence", "appendonly"])
def own_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir=str(tmp_path), appendonly=request.param).start()
    yield server
    server.stop()


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
        self.held.set()
        self.idle.wait(5)

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


async def test_redis_restart_mid_stream_loses_nothing_silently(
    own_redis: RedisServer, prefix: str, services: list[Service], tmp_path: Path
) -> None:
    gw = GatewayProc(service_env(TAILGATE_REDIS_URL=own_redis.url, TAILGATE_REDIS_PREFIX=prefix), log_dir=tmp_path)
    services.append(gw)
    gw.start()
    s = "kafka:restart"
    clients = [await WsClient.connect(gw.ws_url) for _ in range(3)]
    for c in clients:
        await c.subscribe(s)
    producer = NumberedPublisher(own_redis.url, prefix, s)
    producer.start()
    await clients[0].wait_for(lambda: len(clients[0].texts(s)) > 100, what="lines before the restart")
    await asyncio.to_thread(producer.hold)
    own_redis.stop()
    producer.held.clear()  # it keeps trying while Redis is down, and publishes once it is back
    await clients[0].wait_for(lambda: http_get(gw.base + "/readyz")[0] == 503, what="not ready while redis is down")
    own_redis.start()
    await clients[0].wait_for(lambda: http_get(gw.base + "/readyz")[0] == 200, timeout=20, what="ready again")
    await clients[0].wait_for(
        lambda: producer.published > 0 and len(clients[0].texts(s)) > 400, timeout=20, what="lines after"
    )
    producer.stop.set()
    producer.join()
    total = producer.published
    for c in clients:
        await c.wait_for(lambda c=c: c.of_type("gap") or len(c.texts(s)) >= total, timeout=20, what="every line")
        numbers = [int(t.split()[1]) for t in c.texts(s)]
        assert numbers == sorted(set(numbers)), "in order, no duplicate"
        if not c.of_type("gap"):
            assert numbers == list(range(total)), "no hole without a gap notice"
    for c in clients:
        await c.close()


async def test_stuck_client_is_closed_with_1013_and_others_continue(
    rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    gw = start_gateway(TAILGATE_GATEWAY_MAX_QUEUE_BYTES="32768", TAILGATE_GATEWAY_SLOW_CLIENT_TIMEOUT="1")
    pub = Publisher(rclient, Keys(prefix))
    s = "kafka:stuck"
    ok = await WsClient.connect(gw.ws_url)
    await ok.subscribe(s)
    stuck = await reader_that_stops(gw.ws_url, s)
    sent = 0
    deadline = time.monotonic() + 30
    while not slow_closes(gw):
        assert time.monotonic() < deadline, "the stuck client was never closed"
        lines = [(0, encode_line(Line(time.time(), f"{sent + i} " + "z" * 2000))) for i in range(100)]
        pub.publish([StreamBatch(s, lines)])
        sent += 100
        await ok.wait_for(lambda sent=sent: len(ok.texts(s)) == sent, what="healthy client keeps up")
    assert not ok.of_type("dropped")
    # the stuck client reads what was buffered for it, then finds the 1013 close
    with pytest.raises(websockets.ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(stuck.recv(), 10)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1013
    await ok.close()


def slow_closes(gw: GatewayProc) -> float:
    body = http_get(gw.base + "/metrics")[1].decode()
    values = [ln.split()[-1] for ln in body.splitlines() if ln.startswith("tailgate_gateway_slow_clients_closed_total")]
    return float(values[0]) if values else 0.0


async def test_sigterm_drains_with_1001_within_5s(rclient: redis.Redis, prefix: str, start_gateway) -> None:
    gw: GatewayProc = start_gateway()
    clients = [await WsClient.connect(gw.ws_url) for _ in range(20)]
    for c in clients:
        await c.subscribe("kafka:drain")
    started = time.monotonic()
    gw.signal(signal.SIGTERM)
    for c in clients:
        await c.wait_for(lambda c=c: c.closed_code is not None, what="closed by the gateway")
        assert c.closed_code == 1001
    assert await asyncio.to_thread(gw.wait, 5) == 0
    assert time.monotonic() - started < 5


async def test_sigterm_with_a_drain_grace_is_not_ready_at_once_serves_on_then_closes_with_1001(
    rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    gw: GatewayProc = start_gateway(TAILGATE_GATEWAY_DRAIN_GRACE="2")
    before = await WsClient.connect(gw.ws_url)
    await before.subscribe("kafka:grace")
    started = time.monotonic()
    gw.signal(signal.SIGTERM)
    await before.wait_for(lambda: http_get(gw.base + "/readyz")[0] == 503, timeout=0.5, what="/readyz 503 at once")
    # A balancer that has not noticed yet still gets served, new connections included.
    during = await WsClient.connect(gw.ws_url)
    await during.subscribe("kafka:grace")
    lines = [(0, encode_line(Line(time.time(), "during the grace")))]
    await asyncio.to_thread(Publisher(rclient, Keys(prefix)).publish, [StreamBatch("kafka:grace", lines)])
    for c in (before, during):
        await c.wait_for(lambda c=c: c.texts("kafka:grace") == ["during the grace"], what="a line during the grace")
    assert time.monotonic() - started < 2 and before.closed_code is None
    for c in (before, during):
        await c.wait_for(lambda c=c: c.closed_code is not None, timeout=5, what="closed once the grace ends")
        assert c.closed_code == 1001
    assert time.monotonic() - started >= 2
    assert await asyncio.to_thread(gw.wait, 5) == 0


def connections(gw: GatewayProc) -> float:
    body = http_get(gw.base + "/metrics")[1].decode()
    return float(next(ln.split()[-1] for ln in body.splitlines() if ln.startswith("tailgate_gateway_connections ")))


async def test_dead_peer_is_found_by_pings_and_dropped(start_gateway) -> None:
    gw: GatewayProc = start_gateway(TAILGATE_GATEWAY_PING_INTERVAL="0.3", TAILGATE_GATEWAY_PING_TIMEOUT="1")
    # A peer that completes the handshake and then goes silent (a laptop lid closed):
    # it never answers the gateway's pings.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    alive = await WsClient.connect(gw.ws_url)  # answers pings (websockets does)
    deadline = time.monotonic() + 15
    while connections(gw) != 1.0:
        assert time.monotonic() < deadline, "the silent peer was never dropped"
        await asyncio.sleep(0.1)
    await alive.send({"op": "ping"})
    await alive.wait_for(lambda: alive.of_type("pong"), what="the live client still served")
    writer.close()
    await alive.close()
