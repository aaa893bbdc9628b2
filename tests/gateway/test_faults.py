"""Faults and lifecycle of a real gateway: Redis restarts, slow clients, draining."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import websockets

from embedded import RedisServer
from tests.support import (
    GatewayProc,
    NumberedPublisher,
    Service,
    WsClient,
    http_get,
    metric,
    reader_that_stops,
    service_env,
)
from wire import Keys, Line, Publisher, StreamBatch, encode_line


@pytest.fixture(params=[False, True], ids=["no-persistence", "appendonly"])
def own_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir=str(tmp_path), appendonly=request.param).start()
    yield server
    server.stop()


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
    producer.release()  # it keeps trying while Redis is down, and publishes once it is back
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
    while not metric(gw, "tailgate_gateway_slow_clients_closed_total"):
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
    while metric(gw, "tailgate_gateway_connections") != 1.0:
        assert time.monotonic() < deadline, "the silent peer was never dropped"
        await asyncio.sleep(0.1)
    await alive.send({"op": "ping"})
    await alive.wait_for(lambda: alive.of_type("pong"), what="the live client still served")
    writer.close()
    await alive.close()


def every_line_once_or_told(client: WsClient, stream: str, expected: list[int]) -> None:
    """`client` got the lines numbered `expected` in order, each once, except where a `gap`
    or `dropped` frame for `stream` says lines are missing."""
    position = {n: i for i, n in enumerate(expected)}
    at, told = 0, False
    for frame in client.frames:
        if frame.get("stream") != stream:
            continue
        if frame["type"] in ("gap", "dropped"):
            told = True
        for line in frame.get("lines", []) if frame["type"] == "lines" else []:
            i = position[int(line["text"].split()[1])]
            assert i >= at, f"{line['text']!r} again or out of order"
            assert i == at or told, f"lines {expected[at:i][:5]}... missing without a gap"
            at, told = i + 1, False
    assert at == len(expected), f"ended at {at} of {len(expected)}"


def pubsub_client(r: redis.Redis) -> dict | None:
    """The gateway's pub/sub connection, once it has resubscribed."""
    found = [c for c in r.client_list() if c.get("name") == "tailgate-gateway-pubsub" and int(c["sub"]) > 0]
    return found[0] if found else None


async def test_redis_faults_leave_every_line_once_or_an_explicit_gap(
    prefix: str, services: list[Service], tmp_path: Path
) -> None:
    """The pub/sub connection killed twice in quick succession, a batch over Redis's
    pub/sub output-buffer limit, Redis SIGKILLed and restarted empty while it answers
    LOADING (a slow load of another dataset): every client ends with every line once, or
    an explicit gap."""
    server = RedisServer(workdir=str(tmp_path)).start()
    r = redis.Redis.from_url(server.url)
    r.mset({f"filler:{i}": "x" for i in range(1000)})
    r.save()  # the dataset the restart loads slowly; then the test starts from nothing
    r.flushall()
    gw = GatewayProc(
        # a long coalescing window: lines read just before Redis dies wait in the reader
        service_env(TAILGATE_REDIS_URL=server.url, TAILGATE_REDIS_PREFIX=prefix, TAILGATE_GATEWAY_COALESCE_MS="200"),
        log_dir=tmp_path,
    )
    services.append(gw)
    gw.start()
    s = "kafka:faulty"
    live, even, late = [await WsClient.connect(gw.ws_url) for _ in range(3)]
    await live.subscribe(s)
    await even.subscribe(s, regex=r"^n \d*[02468]\b")
    producer = NumberedPublisher(server.url, prefix, s)
    producer.start()

    async def progress(what: str) -> None:
        seen = len(live.texts(s))
        await live.wait_for(lambda: len(live.texts(s)) > seen + 30, timeout=15, what=what)

    await progress("lines flowing")
    await late.subscribe(s, backlog=20)

    # 1. the subscriber killed, and killed again as soon as it is back
    first = pubsub_client(r)
    r.client_kill_filter(_type="pubsub")
    await live.wait_for(lambda: (c := pubsub_client(r)) is not None and c["id"] != first["id"], what="resubscribed")
    r.client_kill_filter(_type="pubsub")
    await progress("lines after two kills")

    # 2. one batch bigger than the subscriber's output-buffer limit: Redis drops the connection
    reconnects = metric(gw, "tailgate_gateway_redis_reconnects_total")
    r.config_set("client-output-buffer-limit", "pubsub 262144 131072 60")
    producer.hold()
    producer.publish_now(300, pad=1000)
    producer.release()
    await live.wait_for(lambda: metric(gw, "tailgate_gateway_redis_reconnects_total") > reconnects, what="dropped")
    r.config_set("client-output-buffer-limit", "pubsub 33554432 8388608 60")
    await progress("lines after the overflow")

    # 3. SIGKILL between two publishes, one line still in the reader's coalescing window;
    # the restart has none of the history and answers LOADING for about a second
    producer.hold()
    producer.publish_now()
    server.kill()
    server.start(extra=("--key-load-delay", "1000", "--loading-process-events-interval-bytes", "1024"))
    producer.release()
    await progress("lines after the restart")

    producer.stop.set()
    producer.join()
    total = producer.published
    for client, expected in ((live, range(total)), (even, range(0, total, 2))):
        await client.wait_for(lambda c=client, e=expected: c.texts(s)[-1:] == [f"n {e[-1]}"], what="the last line")
        every_line_once_or_told(client, s, list(expected))
    await late.wait_for(lambda: late.texts(s)[-1:] == [f"n {total - 1}"], what="the last line")
    every_line_once_or_told(late, s, list(range(int(late.texts(s)[0].split()[1]), total)))
    for client in (live, even, late):
        await client.close()
    server.stop()
