"""What a connection or a background task leaves behind when something fails in it: nothing.

Whatever the cause of an exception in a `/ws` handler, the client is answered (an `error`
frame or close code 1011, never a dropped socket) and every resource of the connection is
given back. A live reader that fails makes `/readyz` say so, and its restart resumes every
viewer. Faults the gateway has no bug for are planted by `tests.gateway.planted`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import redis

from embedded import RedisServer
from tests.support import (
    AUTH_ENV,
    GatewayProc,
    NumberedPublisher,
    Service,
    WsClient,
    http_get,
    metric,
    service_env,
    token,
)
from wire import Keys, Line, Publisher, StreamBatch, encode_line


def planted_gateway(
    redis_server: RedisServer, prefix: str, services: list[Service], tmp_path: Path, faults: str, **env: str
) -> GatewayProc:
    env = service_env(
        TAILGATE_REDIS_URL=redis_server.url, TAILGATE_REDIS_PREFIX=prefix, TAILGATE_TEST_FAULTS=faults, **env
    )
    gw = GatewayProc(env, log_dir=tmp_path, module="tests.gateway.planted")
    services.append(gw)
    return gw.start()


async def nothing_left(gw: GatewayProc, rclient: redis.Redis, keys: Keys, *streams: str) -> None:
    """No connection counted, no viewer, no SUBSCRIBE: what a gateway holds with no client."""

    def empty() -> bool:
        subscribed = dict(rclient.pubsub_numsub(*(keys.live(s) for s in streams)))
        return metric(gw, "tailgate_gateway_connections") == 0 and not any(subscribed.values())

    deadline = time.monotonic() + 10
    while not empty():
        assert time.monotonic() < deadline, "the connection's resources were not given back"
        await asyncio.sleep(0.05)
    assert "tailgate_gateway_subscriptions{" not in http_get(gw.base + "/metrics")[1].decode()


async def drains_at_once(gw: GatewayProc) -> None:
    """SIGTERM finds no client left to wait for (gateway.drain_timeout is 4 s)."""
    started = time.monotonic()
    gw.signal(signal.SIGTERM)
    assert await asyncio.to_thread(gw.wait, 5) == 0
    assert time.monotonic() - started < 2, "the drain waited for a connection nobody holds"


async def test_a_36_byte_frame_costs_nothing_after_it(start_gateway, rclient: redis.Redis, prefix: str) -> None:
    gw: GatewayProc = start_gateway()
    client = await WsClient.connect(gw.ws_url)
    await client.subscribe("kafka:calm")
    await client.send('{"op":"subscribe","stream":"\\ud800"}')
    # Answered, whatever the parser makes of it: an error frame, or a close with a contract code.
    await client.wait_for(lambda: client.of_type("error") or client.closed_code is not None, what="an answer")
    assert client.closed_code in (None, 1011), f"the socket was dropped ({client.closed_code})"
    await client.close()
    await nothing_left(gw, rclient, Keys(prefix), "kafka:calm")
    await drains_at_once(gw)


async def test_any_exception_in_open_or_on_message_ends_in_the_same_cleanup(
    redis_server: RedisServer, rclient: redis.Redis, prefix: str, services: list[Service], tmp_path: Path
) -> None:
    gw = planted_gateway(
        redis_server, prefix, services, tmp_path, "open-once,history", **AUTH_ENV,
        TAILGATE_AUTH_MAX_CONNECTIONS_PER_USER="1",
    )  # fmt: skip
    url = f"{gw.ws_url}?token={token(('kafka:*',))}"
    failed_open = await WsClient.connect(url)
    await failed_open.wait_for(lambda: failed_open.closed_code is not None, what="the failed open answered")
    assert failed_open.closed_code == 1011
    # alice may hold one connection: the failed one was given back, so this one is served
    client = await WsClient.connect(url)
    await client.subscribe("kafka:calm")
    assert client.of_type("subscribed")
    await client.send({"op": "subscribe", "stream": "kafka:boom", "backlog": 10})  # fails after SUBSCRIBE
    await client.wait_for(lambda: client.closed_code is not None, what="the failed subscribe answered")
    assert client.closed_code == 1011
    await nothing_left(gw, rclient, Keys(prefix), "kafka:calm", "kafka:boom")
    again = await WsClient.connect(url)
    await again.subscribe("kafka:calm")
    assert again.of_type("subscribed") and again.closed_code is None
    body = http_get(gw.base + "/metrics")[1].decode()
    assert 'tailgate_gateway_handler_failures_total{where="open"} 1.0' in body
    assert 'tailgate_gateway_handler_failures_total{where="message"} 1.0' in body
    await again.close()
    await drains_at_once(gw)


async def test_a_failed_live_reader_is_reported_and_its_restart_resumes_everyone(
    redis_server: RedisServer, rclient: redis.Redis, prefix: str, services: list[Service], tmp_path: Path
) -> None:
    gw = planted_gateway(redis_server, prefix, services, tmp_path, "dispatch")
    calm, boom = await WsClient.connect(gw.ws_url), await WsClient.connect(gw.ws_url)
    await calm.subscribe("kafka:calm")
    await boom.subscribe("kafka:boom")
    producer = NumberedPublisher(redis_server.url, prefix, "kafka:calm")
    producer.start()
    await calm.wait_for(lambda: len(calm.texts("kafka:calm")) > 20, what="lines before the failure")
    Publisher(rclient, Keys(prefix)).publish([StreamBatch("kafka:boom", [(0, encode_line(Line(1.0, "boom")))])])
    # down while the reader waits for its restart (planted: 1.5 s), and says which task
    status = await calm.wait_for(lambda: _not_ready(gw), what="/readyz 503 while the live reader is down")
    assert "live-reader" in status, status
    await calm.wait_for(lambda: http_get(gw.base + "/readyz")[0] == 200, what="ready once restarted")
    seen = len(calm.texts("kafka:calm"))
    await calm.wait_for(lambda: len(calm.texts("kafka:calm")) > seen + 20, what="lines after the restart")
    producer.stop.set()
    producer.join()
    total = producer.published
    await calm.wait_for(lambda: len(calm.texts("kafka:calm")) >= total, what="every line")
    assert calm.texts("kafka:calm") == [f"n {i}" for i in range(total)], "every line once, in order"
    await boom.wait_for(lambda: boom.texts("kafka:boom"), what="the line whose batch failed")
    assert boom.texts("kafka:boom") == ["boom"]
    assert not calm.of_type("gap") and not boom.of_type("gap")
    assert metric(gw, 'tailgate_gateway_task_failures_total{task="live-reader"}') == 1
    await calm.close()
    await boom.close()


def _not_ready(gw: GatewayProc) -> str | None:
    code, body = http_get(gw.base + "/readyz")
    return json.loads(body)["status"] if code == 503 else None
