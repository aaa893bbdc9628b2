"""Many viewers on one gateway process, and what it reports about itself."""

from __future__ import annotations

import asyncio
import json
import time

import redis

from tests.support import WsClient, assert_gateway_connections, http_get
from wire import Keys, Line, Publisher, StreamBatch, encode_line


async def test_1000_concurrent_clients(rclient: redis.Redis, prefix: str, start_gateway) -> None:
    gw = start_gateway()
    streams = [f"kafka:many{i}" for i in range(10)]
    clients = await asyncio.gather(*(WsClient.connect(gw.ws_url) for _ in range(1000)))
    await asyncio.gather(*(c.subscribe(streams[i % 10]) for i, c in enumerate(clients)))
    assert all(c.of_type("subscribed") for c in clients)
    pub = Publisher(rclient, Keys(prefix))
    for round_ in range(5):
        for s in streams:
            pub.publish([StreamBatch(s, [(0, encode_line(Line(time.time(), f"{s} {round_}-{j}"))) for j in range(20)])])
    for i, c in enumerate(clients):
        s = streams[i % 10]
        expected = [f"{s} {r}-{j}" for r in range(5) for j in range(20)]
        await c.wait_for(lambda c=c, s=s: len(c.texts(s)) >= 100, timeout=30, what="100 lines")
        assert c.texts(s) == expected
    assert_gateway_connections(rclient)
    metrics = http_get(gw.base + "/metrics")[1].decode()
    assert "tailgate_gateway_connections 1000.0" in metrics
    assert 'tailgate_gateway_lines_sent_total{stream="kafka:many0"} 10000.0' in metrics
    assert 'tailgate_gateway_subscriptions{stream="kafka:many0"} 100.0' in metrics
    # one observation per frame per client; frames may carry several publishes
    lag_count = float(metrics.split("tailgate_gateway_publish_to_send_seconds_count ")[1].split()[0])
    assert 1000 <= lag_count <= 5000
    assert "tailgate_gateway_lines_in_total 1000.0" in metrics
    await asyncio.gather(*(c.close() for c in clients))


async def test_streams_api_lists_configured_and_recent_streams_with_rates(
    rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    gw = start_gateway(TAILGATE_BRIDGE_TOPICS="configured-topic", TAILGATE_GATEWAY_RATE_INTERVAL="0.5")
    pub = Publisher(rclient, Keys(prefix))
    pub.publish([StreamBatch("kafka:app/web-1", [(0, encode_line(Line(time.time(), "x")))] * 3)])

    def streams() -> dict[str, dict]:
        status, body = http_get(gw.base + "/api/streams")
        assert status == 200
        return {s["stream"]: s for s in json.loads(body)["streams"]}

    listed = streams()
    assert set(listed) == {"kafka:configured-topic", "kafka:app/web-1"}
    assert listed["kafka:app/web-1"]["lines"] == 3 and listed["kafka:app/web-1"]["last_seen"] is not None
    assert listed["kafka:configured-topic"]["lines"] == 0

    # a steady 200 lines/s shows as about that, on any request, and goes back to 0 after
    stop = asyncio.Event()

    async def publish_steadily() -> None:
        batch = [StreamBatch("kafka:app/web-1", [(0, encode_line(Line(time.time(), "y")))] * 10)]
        while not stop.is_set():
            await asyncio.to_thread(pub.publish, batch)
            await asyncio.sleep(0.05)

    feeder = asyncio.create_task(publish_steadily())
    try:
        rate = await wait_for_rate(streams, lambda r: r > 50)
        assert 50 < rate < 400
        assert streams()["kafka:configured-topic"]["rate"] == 0
    finally:
        stop.set()
        await feeder
    await wait_for_rate(streams, lambda r: r == 0)


async def wait_for_rate(streams, check, timeout: float = 10.0) -> float:
    deadline = time.monotonic() + timeout
    while True:
        rate = streams()["kafka:app/web-1"]["rate"]
        if check(rate):
            return rate
        assert time.monotonic() < deadline, f"rate of kafka:app/web-1 still {rate}"
        await asyncio.sleep(0.1)
