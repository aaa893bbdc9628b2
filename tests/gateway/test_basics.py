"""Foundation behaviour of the gateway: one pub/sub connection, bad input answered."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis

from tests.support import ROOT, WsClient, assert_gateway_connections, http_get, service_env
from wire import Keys, Line, Publisher, StreamBatch, encode_line


def _pubsub_clients(rclient: redis.Redis) -> list[dict]:
    return [c for c in rclient.client_list() if c.get("name") == "tailgate-gateway-pubsub"]


async def test_one_pubsub_connection_for_50_clients_on_10_streams(
    rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    gw = start_gateway()
    streams = [f"kafka:s{i}" for i in range(10)]
    clients = [await WsClient.connect(gw.ws_url) for _ in range(50)]
    for i, c in enumerate(clients):
        await c.subscribe(streams[i % 10])
    pubsub = _pubsub_clients(rclient)
    assert len(pubsub) == 1
    assert int(pubsub[0]["sub"]) == 10
    assert_gateway_connections(rclient)

    pub = Publisher(rclient, Keys(prefix))
    for s in streams:
        pub.publish([StreamBatch(s, [(0, encode_line(Line(1.0, f"hello {s}")))])])
    for i, c in enumerate(clients):
        await c.wait_for(lambda c=c, i=i: c.texts(streams[i % 10]) == [f"hello {streams[i % 10]}"], what="line")
    for c in clients:
        await c.close()


async def test_bad_frames_get_errors_and_the_connection_stays_usable(
    rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    gw = start_gateway()
    c = await WsClient.connect(gw.ws_url)
    for bad in [
        "not json",
        "[1,2]",
        '{"op":"fly"}',
        '{"no":"op"}',
        '{"op":"subscribe","stream":"kafka:bad topic"}',
        '{"op":"subscribe","stream":"file:m:../etc/passwd"}',
        '{"op":"subscribe","stream":"kafka:x","backlog":-1}',
        '{"op":"subscribe","stream":"kafka:x","regex":"(unclosed"}',
        '{"op":"subscribe","stream":"kafka:x","since":"yesterday"}',
        '{"op":"subscribe","stream":"kafka:x","since":"1-0","epoch":"Not-One"}',
        '{"op":"subscribe","stream":"kafka:x","epoch":"18c2f1a0b3c4d5e6f"}',
    ]:
        before = len(c.frames)
        await c.send(bad)
        errors = await c.wait_for(
            lambda before=before: [f for f in c.frames[before:] if f["type"] == "error"], what=bad
        )
        assert errors[0]["code"] == "bad_request", (bad, errors)
        assert errors[0]["message"]
    await c.send({"op": "ping"})
    await c.wait_for(lambda: c.of_type("pong"), what="pong")
    await c.subscribe("kafka:ok")
    Publisher(rclient, Keys(prefix)).publish([StreamBatch("kafka:ok", [(0, encode_line(Line(1.0, "still here")))])])
    await c.wait_for(lambda: c.texts("kafka:ok") == ["still here"], what="line after errors")
    await c.send({"op": "unsubscribe", "stream": "kafka:ok"})
    await c.wait_for(lambda: c.of_type("unsubscribed"), what="unsubscribed")
    await c.close()


def test_health_and_readiness(start_gateway) -> None:
    gw = start_gateway()
    assert http_get(gw.base + "/healthz")[0] == 200
    assert http_get(gw.base + "/readyz")[0] == 200
    status, body = http_get(gw.base + "/metrics")
    assert status == 200 and b"tailgate_gateway_connections" in body


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("RATE_INTERVAL", "0", "gateway.rate_interval must be greater than 0"),
        ("MAX_QUEUE_BYTES", "-1", "gateway.max_queue_bytes must be greater than 0"),
        ("COALESCE_MS", "-5", "gateway.coalesce_ms must not be negative"),
        ("DRAIN_GRACE", "-1", "gateway.drain_grace must not be negative"),
        ("WORKERS", "-2", "gateway.workers must not be negative"),
    ],
)
def test_an_impossible_setting_fails_the_start_with_a_clear_error(setting: str, value: str, message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "--port", "0"],
        cwd=ROOT,
        env=service_env(**{f"TAILGATE_GATEWAY_{setting}": value}),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "configuration error" in proc.stderr and message in proc.stderr
