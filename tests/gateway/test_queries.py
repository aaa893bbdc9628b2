"""Queries on a real gateway and Redis: history from a time, finite ranges ending with
`complete`, a line with its context, keyword terms, excluded terms and meta fields, what a
shared field filter costs, and the refusals a bad query gets."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import redis

from embedded import wait_until
from tests.support import WsClient, metric
from wire import Keys, Line, Publisher, StreamBatch, encode_line


def publish(pub: Publisher, stream: str, texts: list[str], meta: list[dict[str, Any] | None] | None = None) -> None:
    lines = [(0, encode_line(Line(time.time(), t, meta[i] if meta else None))) for i, t in enumerate(texts)]
    pub.publish([StreamBatch(stream, lines)])


def redis_ms(rclient: redis.Redis) -> int:
    seconds, micros = rclient.time()
    return seconds * 1000 + micros // 1000


def next_millisecond(rclient: redis.Redis, stream_key: str) -> int:
    """A millisecond, by Redis's clock, after every id now in `stream_key`: lines published
    from now on have ids at or after it (ids are taken from that clock)."""
    last = int(rclient.xrevrange(stream_key, count=1)[0][0].split(b"-")[0])
    wait_until(lambda: redis_ms(rclient) > last, 2, what="the Redis clock to move on")
    return last + 1


def frames_of(c: WsClient, stream: str) -> list[str]:
    return [f["type"] for f in c.frames if f.get("stream") == stream]


async def test_from_a_time_then_live_and_a_finite_range_ending_with_complete(
    rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    gw = start_gateway()
    pub = Publisher(rclient, Keys(prefix))
    s, key = "kafka:timed", Keys(prefix).hist("kafka:timed")
    publish(pub, s, [f"early {i}" for i in range(5)])
    t1 = next_millisecond(rclient, key)
    publish(pub, s, [f"middle {i}" for i in range(5)])
    t2 = next_millisecond(rclient, key)
    publish(pub, s, [f"late {i}" for i in range(5)])
    middle, late = [f"middle {i}" for i in range(5)], [f"late {i}" for i in range(5)]

    live = await WsClient.connect(gw.ws_url)
    await live.subscribe(s, caught_up=True, **{"from": t1 / 1000})  # epoch seconds
    await live.wait_for(lambda: live.of_type("caught_up"), what="history from t1")
    publish(pub, s, ["after"])
    await live.wait_for(lambda: "after" in live.texts(s), what="a live line")
    assert live.texts(s) == [*middle, *late, "after"]

    iso = datetime.fromtimestamp(t2 / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    finite = await WsClient.connect(gw.ws_url)
    await finite.subscribe(s, **{"from": t1 / 1000, "until": iso})
    await finite.wait_for(lambda: finite.of_type("complete"), what="complete")
    publish(pub, s, ["not for the finite query"])
    await live.wait_for(lambda: "not for the finite query" in live.texts(s), what="the live viewer's line")
    assert finite.texts(s) == middle
    assert frames_of(finite, s) == ["subscribed", "lines", "complete"], "no live line after complete"

    # until alone with a backlog: the last N lines before it
    before = await WsClient.connect(gw.ws_url)
    await before.subscribe(s, until=t2 / 1000, backlog=3)
    await before.wait_for(lambda: before.of_type("complete"), what="complete")
    assert before.texts(s) == middle[-3:]
    for c in (live, finite, before):
        await c.close()


async def test_a_line_with_its_context_then_complete(rclient: redis.Redis, prefix: str, start_gateway) -> None:
    gw = start_gateway()
    pub = Publisher(rclient, Keys(prefix))
    s = "kafka:ctx"
    publish(pub, s, [f"line {i}" + (" noise" if i % 2 else "") for i in range(40)])
    ids = [entry_id.decode() for entry_id, _ in rclient.xrange(Keys(prefix).hist(s))]
    c = await WsClient.connect(gw.ws_url)
    await c.subscribe(s, around=ids[20], context=3)
    await c.wait_for(lambda: c.of_type("complete"), what="complete")
    assert c.texts(s) == [f"line {i}" + (" noise" if i % 2 else "") for i in range(17, 24)]
    await c.subscribe(s, around=ids[20], context=2, exclude=["noise"])  # the context is filtered too
    await c.wait_for(lambda: len(c.of_type("complete")) == 2, what="second complete")
    assert c.texts(s)[7:] == ["line 16", "line 18", "line 20", "line 22", "line 24"]
    await c.close()


async def test_keyword_terms_excluded_terms_and_meta_fields(rclient: redis.Redis, prefix: str, start_gateway) -> None:
    gw = start_gateway()
    pub = Publisher(rclient, Keys(prefix))
    s = "kafka:fields"
    texts = ["GET /healthz 200", "GET /api error 500", "POST /api error 502", "GET /api ok", "worker error"]
    metas: list[dict[str, Any] | None] = [
        {"level": "info", "http": {"status": 200}},
        {"level": "ERROR", "http": {"status": 500}, "service": "checkout"},
        {"level": "error", "http": {"status": 502}, "service": "cart"},
        {"level": "info", "http": {"status": 200}, "service": "checkout"},
        None,
    ]
    publish(pub, s, texts, metas)
    c = await WsClient.connect(gw.ws_url)
    await c.subscribe(s, keyword=["error", "/api"], exclude=["502"], backlog=100, caught_up=True)
    d = await WsClient.connect(gw.ws_url)
    await d.subscribe(
        s, fields={"level": "error", "meta.service": "checkout"}, ignore_case=True, backlog=100, caught_up=True
    )
    e = await WsClient.connect(gw.ws_url)
    await e.subscribe(s, fields={"http.status": 200}, exclude=["healthz"], backlog=100, caught_up=True)
    for client in (c, d, e):
        await client.wait_for(lambda client=client: client.of_type("caught_up"), what="history read")
    assert [f["after"] for f in d.of_type("caught_up")] == [
        rclient.xrevrange(Keys(prefix).hist(s), count=1)[0][0].decode()
    ]
    assert c.texts(s) == ["GET /api error 500"]
    assert d.texts(s) == ["GET /api error 500"]
    assert e.texts(s) == ["GET /api ok"]
    publish(
        pub, s, ["POST /api error 500", "x"], [{"level": "Error", "service": "CHECKOUT"}, {"http": {"status": 200}}]
    )
    await d.wait_for(lambda: len(d.texts(s)) == 2, what="a live line matching the fields")
    await e.wait_for(lambda: len(e.texts(s)) == 2, what="a live line matching http.status")
    await c.wait_for(lambda: len(c.texts(s)) == 2, what="a live line with every term")
    assert d.texts(s)[1] == "POST /api error 500" and e.texts(s)[1] == "x"
    assert c.texts(s) == ["GET /api error 500", "POST /api error 500"]
    for client in (c, d, e):
        await client.close()


async def test_a_field_filter_shared_by_100_viewers_is_evaluated_once_per_line(
    rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    gw = start_gateway()
    pub = Publisher(rclient, Keys(prefix))
    s = "kafka:shared-filter"
    name = "tailgate_gateway_filter_evaluations_total"
    viewers = [await WsClient.connect(gw.ws_url) for _ in range(100)]
    for i, v in enumerate(viewers):  # the same filter, written in two orders
        fields = {"level": "error", "service": "checkout"} if i % 2 else {"service": "checkout", "level": "error"}
        await v.subscribe(s, fields=fields)
    before = metric(gw, name)
    lines = 0
    for batch in range(20):
        metas: list[dict[str, Any] | None] = [
            {"level": "error" if j % 5 == 0 else "info", "service": "checkout"} for j in range(25)
        ]
        publish(pub, s, [f"{batch}-{j}" for j in range(25)], metas)
        lines += 25
    await asyncio.gather(*(v.wait_for(lambda v=v: len(v.texts(s)) == 100, what="matching lines") for v in viewers))
    wait_until(lambda: metric(gw, name) - before >= lines, 5, what="the evaluations to be counted")
    assert metric(gw, name) - before == lines, "one evaluation per line, not one per line and viewer"

    other = await WsClient.connect(gw.ws_url)  # a second distinct filter costs one more pass
    await other.subscribe(s, fields={"level": "info"})
    publish(pub, s, ["one more"], [{"level": "info"}])
    await other.wait_for(lambda: other.texts(s) == ["one more"], what="the other filter's line")
    wait_until(lambda: metric(gw, name) - before == lines + 2, 5, what="two evaluations of the new line")
    for v in [*viewers, other]:
        await v.close()


async def test_bad_queries_get_clear_errors_and_the_connection_goes_on(
    rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    gw = start_gateway(TAILGATE_GATEWAY_MAX_FILTER_TERMS="3", TAILGATE_SALT_MODE="off")
    c = await WsClient.connect(gw.ws_url)
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"from": 20, "until": 10}, "bad_request", "until must be later than from"),
        ({"from": "yesterday"}, "bad_request", "ISO 8601"),
        ({"until": True}, "bad_request", "epoch seconds"),
        ({"keyword": ["a", "b"], "exclude": ["c", "d"]}, "too_large", "at most 3"),
        ({"fields": {"level": {"nested": 1}}}, "bad_request", "string, a number or true/false"),
        ({"fields": {"a..b": "x"}}, "bad_request", "none empty"),
        ({"fields": ["level", "error"]}, "bad_request", "fields must be an object"),
        ({"exclude": [1]}, "bad_request", "exclude must be a string"),
        ({"around": "5-0", "since": "1-0"}, "bad_request", "around stands alone"),
        ({"context": 3}, "bad_request", "context goes with around"),
    ]
    for fields, code, words in cases:
        before = len(c.of_type("error"))
        await c.send({"op": "subscribe", "stream": "kafka:q", **fields})
        await c.wait_for(lambda before=before: len(c.of_type("error")) > before, what=str(fields))
        error = c.of_type("error")[-1]
        assert (error["code"], error["stream"]) == (code, "kafka:q") and words in error["message"], (fields, error)
    await c.subscribe("file:web-*:/var/log/x")
    assert c.of_type("error")[-1]["code"] == "unavailable", "a minion glob with Salt off"
    await c.subscribe("file:web-[1]:/var/log/x")
    assert "minion" in c.of_type("error")[-1]["message"]
    await c.send({"op": "ping"})
    await c.wait_for(lambda: c.of_type("pong"), what="pong: the connection goes on")
    assert c.closed_code is None
    await c.close()
