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

from embedded import RedisServer, wait_until
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


async def numbered_viewers(gw: GatewayProc, url: str, prefix: str, s: str) -> tuple[list[WsClient], NumberedPublisher]:
    """Three viewers of `s` (every line; the even ones; a backlog of 20 joining once lines
    flow) and a started producer of its numbered lines."""
    live, even, late = [await WsClient.connect(gw.ws_url) for _ in range(3)]
    await live.subscribe(s)
    await even.subscribe(s, regex=r"^n \d*[02468]\b")
    producer = NumberedPublisher(url, prefix, s)
    producer.start()
    await live.wait_for(lambda: len(live.texts(s)) > 30, what="lines flowing")
    await late.subscribe(s, backlog=20)
    return [live, even, late], producer


async def each_got_every_line_once_or_was_told(viewers: list[WsClient], s: str, producer: NumberedPublisher) -> None:
    """Stop `producer`; then each of the `numbered_viewers` ends with every line it asked
    for, in order, once, or a `gap` or `dropped` where lines are missing."""
    producer.stop.set()
    producer.join()
    total = producer.published
    live, even, late = viewers
    first_late = int(late.texts(s)[0].split()[1])
    for client, expected in ((live, range(total)), (even, range(0, total, 2)), (late, range(first_late, total))):
        await client.wait_for(lambda c=client, e=expected: c.texts(s)[-1:] == [f"n {e[-1]}"], what="the last line")
        every_line_once_or_told(client, s, list(expected))


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
    viewers, producer = await numbered_viewers(gw, server.url, prefix, s)
    live = viewers[0]

    async def progress(what: str) -> None:
        seen = len(live.texts(s))
        await live.wait_for(lambda: len(live.texts(s)) > seen + 30, timeout=15, what=what)

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

    await each_got_every_line_once_or_was_told(viewers, s, producer)
    for client in viewers:
        await client.close()
    server.stop()


# Redis losing data (issue 12, defect 6): the history epoch and the cursor told apart --------


def gap_reasons(client: WsClient, stream: str) -> list[str]:
    return [f["reason"] for f in client.of_type("gap") if f["stream"] == stream]


def said(client: WsClient, stream: str) -> list[str]:
    """What `client` was told about `stream`, in order: frame types, gaps with their reason."""
    return [
        f"gap {f['reason']}" if f["type"] == "gap" else f["type"] for f in client.frames if f.get("stream") == stream
    ]


async def test_redis_killed_under_live_clients_is_a_reset_when_it_comes_back_empty(
    own_redis: RedisServer, prefix: str, services: list[Service], tmp_path: Path
) -> None:
    """Lines Redis acknowledged but never sent live (the subscriber was reconnecting), then
    Redis SIGKILLed. Restarted empty, every client is told `gap` reason `reset` once, then
    gets every later line; restarted from its append-only file, every line comes and
    nothing is said."""
    gw = GatewayProc(service_env(TAILGATE_REDIS_URL=own_redis.url, TAILGATE_REDIS_PREFIX=prefix), log_dir=tmp_path)
    services.append(gw)
    gw.start()
    s = "kafka:lost"
    viewers, producer = await numbered_viewers(gw, own_redis.url, prefix, s)
    live = viewers[0]
    await live.wait_for(lambda: len(live.texts(s)) > 100, what="more lines")

    producer.hold()
    redis.Redis.from_url(own_redis.url).client_kill_filter(_type="pubsub")
    # the gateway waits at least 50 ms before it reconnects: these reach history, no viewer
    producer.publish_now(5)
    own_redis.kill()
    own_redis.start()
    producer.release()
    seen = producer.published
    await live.wait_for(lambda: len(live.texts(s)) > seen + 50, timeout=15, what="lines after the restart")

    await each_got_every_line_once_or_was_told(viewers, s, producer)
    for client in viewers:
        assert gap_reasons(client, s) == ([] if own_redis.appendonly else ["reset"])
        await client.close()


async def test_flushall_is_a_reset_for_a_live_client_and_for_one_resuming_with_its_epoch(
    prefix: str, services: list[Service], tmp_path: Path
) -> None:
    server = RedisServer(workdir=str(tmp_path)).start()  # FLUSHALL: a Redis of its own
    try:
        gw = GatewayProc(service_env(TAILGATE_REDIS_URL=server.url, TAILGATE_REDIS_PREFIX=prefix), log_dir=tmp_path)
        services.append(gw)
        gw.start()
        r = redis.Redis.from_url(server.url)
        pub, s = Publisher(r, Keys(prefix)), "kafka:flushed"

        def publish(*texts: str) -> None:
            pub.publish([StreamBatch(s, [(0, encode_line(Line(time.time(), t))) for t in texts])])

        stay, away = await WsClient.connect(gw.ws_url), await WsClient.connect(gw.ws_url)
        for client in (stay, away):
            await client.subscribe(s)
        publish("a0", "a1", "a2")
        await away.wait_for(lambda: away.texts(s) == ["a0", "a1", "a2"], what="the first lines")
        epoch, since = away.of_type("lines")[-1]["epoch"], away.lines[s][-1]["id"]
        await away.close()

        r.flushall()
        publish("b0", "b1")
        await stay.wait_for(lambda: stay.texts(s)[-2:] == ["b0", "b1"], what="lines of the new history")
        assert said(stay, s) == ["subscribed", "lines", "gap reset", "lines"]
        assert stay.of_type("lines")[-1]["epoch"] not in (None, epoch)

        back, old = await WsClient.connect(gw.ws_url), await WsClient.connect(gw.ws_url)
        await back.subscribe(s, since=since, epoch=epoch)
        await old.subscribe(s, since=since)  # a client from before epochs: the ids alone say nothing was lost
        publish("b2")
        for client in (back, old, stay):
            await client.wait_for(lambda c=client: c.texts(s)[-1:] == ["b2"], what="the live line")
        assert said(back, s)[:3] == ["subscribed", "gap reset", "lines"] and back.texts(s) == ["b0", "b1", "b2"]
        assert "gap reset" not in said(old, s) and old.texts(s) == ["b0", "b1", "b2"]
        assert gap_reasons(stay, s) == ["reset"], "told once"
        for client in (stay, back, old):
            await client.close()
    finally:
        server.stop()


async def test_a_failover_to_a_replica_that_was_behind_is_a_gap_behind_for_resuming_clients(
    prefix: str, services: list[Service], tmp_path: Path
) -> None:
    """A real replica stops following its primary and takes over (REPLICAOF NO ONE) while
    the primary still acknowledges lines: those are lost with it. The epoch, replicated,
    is the same: a client whose cursor is newer than the replica's history is told `gap`
    reason `behind`; one whose cursor is the replica's newest line is told nothing."""
    (tmp_path / "primary").mkdir()
    (tmp_path / "replica").mkdir()
    primary = RedisServer(workdir=str(tmp_path / "primary")).start()
    replica = RedisServer(workdir=str(tmp_path / "replica"))
    try:
        replica.start(extra=("--replicaof", "127.0.0.1", str(primary.port)))
        env = {"TAILGATE_REDIS_PREFIX": prefix}
        gw = GatewayProc(service_env(TAILGATE_REDIS_URL=primary.url, **env), log_dir=tmp_path)
        services.append(gw)
        gw.start()
        s, keys = "kafka:failover", Keys(prefix)
        first, second = redis.Redis.from_url(primary.url), redis.Redis.from_url(replica.url)

        def publish(r: redis.Redis, *texts: str) -> None:
            Publisher(r, keys).publish([StreamBatch(s, [(0, encode_line(Line(time.time(), t))) for t in texts])])

        client = await WsClient.connect(gw.ws_url)
        await client.subscribe(s)
        publish(first, *(f"n {i}" for i in range(10)))
        await client.wait_for(lambda: len(client.texts(s)) == 10, what="the replicated lines")
        newest_replicated = client.lines[s][-1]["id"]
        wait_until(lambda: second.exists(keys.hist(s)) and second.xinfo_stream(keys.hist(s))["length"] == 10)
        second.replicaof("NO", "ONE")  # the failover
        publish(first, *(f"n {i}" for i in range(10, 15)))  # acknowledged by the primary only
        await client.wait_for(lambda: len(client.texts(s)) == 15, what="the lines the replica never got")
        epoch, since = client.of_type("lines")[-1]["epoch"], client.lines[s][-1]["id"]
        await client.close()
        gw.stop()

        gw = GatewayProc(service_env(TAILGATE_REDIS_URL=replica.url, **env), log_dir=tmp_path)
        services.append(gw)
        gw.start()
        behind, old, newest = [await WsClient.connect(gw.ws_url) for _ in range(3)]
        await behind.subscribe(s, since=since, epoch=epoch)
        await old.subscribe(s, since=since)
        await newest.subscribe(s, since=newest_replicated, epoch=epoch)
        publish(second, "after the failover")
        for c in (behind, old, newest):
            await c.wait_for(lambda c=c: c.texts(s) == ["after the failover"], what="the new primary's line")
        assert said(behind, s) == said(old, s) == ["subscribed", "gap behind", "lines"]
        assert said(newest, s) == ["subscribed", "lines"], "a cursor at the newest line is no gap"
        for c in (behind, old, newest):
            await c.close()
    finally:
        replica.stop()
        primary.stop()
