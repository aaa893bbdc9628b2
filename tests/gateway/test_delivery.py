"""What viewers receive from a real gateway on a real Redis: filters, backlog, resume,
gaps, and backpressure that hurts only the slow client."""

from __future__ import annotations

import asyncio
import json
import time

import redis

from tests.support import WsClient, reader_that_stops
from wire import Keys, Line, Publisher, StreamBatch, encode_line


def publish(pub: Publisher, stream: str, texts: list[str]) -> None:
    pub.publish([StreamBatch(stream, [(0, encode_line(Line(time.time(), t))) for t in texts])])


async def test_filters_backlog_and_ignore_case(rclient: redis.Redis, prefix: str, start_gateway) -> None:
    gw = start_gateway()
    pub = Publisher(rclient, Keys(prefix))
    s = "kafka:filt"
    publish(pub, s, [f"{'ERROR' if i % 3 == 0 else 'info'} line {i}" for i in range(30)])
    c = await WsClient.connect(gw.ws_url)
    await c.subscribe(s, keyword="error", ignore_case=True, backlog=4)
    await c.wait_for(lambda: len(c.texts(s)) == 4, what="backlog")
    assert c.texts(s) == [f"ERROR line {i}" for i in (18, 21, 24, 27)]
    publish(pub, s, ["info later", "Error later", "ERROR again"])
    await c.wait_for(lambda: len(c.texts(s)) == 6, what="live matching lines")
    assert c.texts(s)[4:] == ["Error later", "ERROR again"]
    # a regex subscription on the same stream by another client
    d = await WsClient.connect(gw.ws_url)
    await d.subscribe(s, regex=r"line (1|2)\d$", backlog=100)
    await d.wait_for(lambda: len(d.texts(s)) == 20, what="regex backlog")
    assert d.texts(s) == [
        t
        for t in (f"{'ERROR' if i % 3 == 0 else 'info'} line {i}" for i in range(30))
        if t[-2:-1] in "12" and t.split()[-1] >= "10"
    ]
    await c.close()
    await d.close()


async def test_resume_with_since_returns_exactly_the_missed_lines(
    rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    gw = start_gateway()
    pub = Publisher(rclient, Keys(prefix))
    s = "kafka:resume"
    c = await WsClient.connect(gw.ws_url)
    await c.subscribe(s)
    publish(pub, s, [f"a{i}" for i in range(10)])
    await c.wait_for(lambda: len(c.texts(s)) == 10, what="first lines")
    last = c.lines[s][-1]["id"]
    await c.close()
    publish(pub, s, [f"b{i}" for i in range(7)])
    c2 = await WsClient.connect(gw.ws_url)
    await c2.subscribe(s, since=last)
    await c2.wait_for(lambda: len(c2.texts(s)) == 7, what="missed lines")
    publish(pub, s, ["live"])
    await c2.wait_for(lambda: len(c2.texts(s)) == 8, what="live line")
    assert c2.texts(s) == [f"b{i}" for i in range(7)] + ["live"]
    assert not c2.of_type("gap")
    await c2.close()


async def test_resume_older_than_history_announces_a_gap(rclient: redis.Redis, prefix: str, start_gateway) -> None:
    gw = start_gateway()
    pub = Publisher(rclient, Keys(prefix), maxlen=100)
    s = "kafka:gappy"
    publish(pub, s, ["first"])
    first_id = rclient.xrange(Keys(prefix).hist(s))[0][0].decode()
    for i in range(20):
        publish(pub, s, [f"l{i}-{j}" for j in range(50)])
    c = await WsClient.connect(gw.ws_url)
    await c.subscribe(s, since=first_id)
    await c.wait_for(lambda: c.of_type("gap") and c.texts(s), what="gap then lines")
    kinds = [f["type"] for f in c.frames if f.get("stream") == s]
    assert kinds.index("gap") < kinds.index("lines")
    assert c.texts(s)[-1] == "l19-49"
    await c.close()


async def test_slow_client_gets_dropped_while_fast_client_gets_everything(
    rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    gw = start_gateway(TAILGATE_GATEWAY_MAX_QUEUE_BYTES="65536", TAILGATE_GATEWAY_SLOW_CLIENT_TIMEOUT="60")
    pub = Publisher(rclient, Keys(prefix))
    s = "kafka:busy"
    fast = await WsClient.connect(gw.ws_url)
    await fast.subscribe(s)
    slow = await reader_that_stops(gw.ws_url, s)
    payload = "x" * 1000
    total = 0
    lag: list[float] = []
    for batch in range(40):
        publish(pub, s, [f"{batch}-{i} {payload}" for i in range(250)])
        total += 250
        t0 = time.monotonic()
        await fast.wait_for(lambda total=total: len(fast.texts(s)) == total, timeout=20, what="fast client keeps up")
        lag.append(time.monotonic() - t0)
    assert fast.texts(s) == [f"{b}-{i} {payload}" for b in range(40) for i in range(250)]
    assert not fast.of_type("dropped")
    # now the slow client reads everything it was sent
    got, dropped = [], 0
    while len(got) + dropped < total:
        msg = json.loads(await asyncio.wait_for(slow.recv(), 10))
        if msg["type"] == "lines":
            got += [line["text"] for line in msg["lines"]]
        elif msg["type"] == "dropped":
            dropped += msg["count"]
    assert dropped > 0
    assert len(got) + dropped == total
    expected = [f"{b}-{i} {payload}" for b in range(40) for i in range(250)]
    positions = [expected.index(t) for t in got[:5]] + [expected.index(t) for t in got[-5:]]
    assert positions == sorted(positions)  # order kept across the hole
    assert got[-1] == expected[-1]
    await fast.close()
    await slow.close()


async def test_coalescing_holds_back_only_what_follows_a_hand_off(
    rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    """A coalescing window far longer than the test: the line after a quiet spell goes
    out at once, and lines published right behind it still reach the viewer as one frame."""
    gw = start_gateway(TAILGATE_GATEWAY_COALESCE_MS="4000")
    pub = Publisher(rclient, Keys(prefix))
    s = "kafka:quiet"
    c = await WsClient.connect(gw.ws_url)
    await c.subscribe(s)
    publish(pub, s, ["first"])
    await c.wait_for(lambda: c.texts(s) == ["first"], timeout=2.0, what="a line after a quiet spell, not held back")
    publish(pub, s, ["second"])
    publish(pub, s, ["third"])
    await c.wait_for(lambda: len(c.texts(s)) == 3, what="the lines behind it")
    assert [[line["text"] for line in f["lines"]] for f in c.of_type("lines")] == [["first"], ["second", "third"]]
    await c.close()
