"""Access control and abuse limits through real gateway processes and a real Redis.

Each test starts a gateway with authentication on (TAILGATE_AUTH_SECRET, or a public key
file) and checks what a user or an attacker would notice: refused handshakes, `forbidden`
subscribes, filtered listings, the audit trail, limits answered with their error code and
counted in /metrics, and a connection closed when its token expires.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support import AUTH_ENV, SECRET, WsClient, audit_records, http, metric, token
from wire import Keys, Line, Publisher, StreamBatch, encode_line


async def handshake_status(url: str, **kwargs: Any) -> int:
    """The HTTP status a refused WebSocket handshake got (fails if it was accepted)."""
    with pytest.raises(websockets.InvalidStatus) as info:
        ws = await websockets.connect(url, **kwargs)
        await ws.close()
    return info.value.response.status_code


def publish(rclient: redis.Redis, prefix: str, stream: str, texts: list[str]) -> None:
    lines = [(0, encode_line(Line(time.time(), t))) for t in texts]
    Publisher(rclient, Keys(prefix)).publish([StreamBatch(stream, lines)])


async def wait_closed(client: WsClient, timeout: float = 10.0) -> int:
    await client.wait_for(lambda: client.closed_code is not None, timeout, what="the gateway to close")
    assert client.closed_code is not None
    return client.closed_code


async def test_refused_tokens_get_401_at_the_handshake_and_on_the_api(start_gateway) -> None:
    gw = start_gateway(**AUTH_ENV)
    other_key = "another-" + "z" * 40
    good = token()
    header, payload, _ = good.split(".")
    none_header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    bad = {
        "missing": None,
        "expired": token(ttl=-30),
        "tampered": f"{header}.{payload[:-4]}AAAA.{good.split('.')[2]}",
        "alg none": f"{none_header}.{payload}.",
        "wrong key": token(key=other_key),
    }
    for what, tok in bad.items():
        url = gw.ws_url if tok is None else f"{gw.ws_url}?token={tok}"
        assert await handshake_status(url) == 401, what
        headers = {} if tok is None else {"Authorization": f"Bearer {tok}"}
        for path in ("/api/streams", "/api/minions", "/api/minions/web-1/files"):
            status, resp_headers, body = http(gw.base + path, headers)
            assert status == 401, (what, path)
            assert json.loads(body)["error"] == "unauthorized" and resp_headers["WWW-Authenticate"].startswith("Bearer")
    # The console page itself loads without a token (the user must be able to paste one).
    assert http(gw.base + "/")[0] == 200
    assert http(gw.base + "/api/streams", {"Authorization": f"Bearer {good}"})[0] == 200
    assert metric(gw, "tailgate_gateway_access_refusals_total", 'reason="unauthenticated"') >= 16
    assert metric(gw, "tailgate_gateway_access_refusals_total", 'reason="expired"') >= 4
    refusals = [r for r in audit_records(gw) if r["decision"] == "refuse"]
    assert {r["reason"] for r in refusals} >= {"token expired", "token signature does not verify"}
    assert all(r["from"] == "127.0.0.1" and r["at"] for r in refusals)
    # Tokens in URLs never reach the logs.
    assert good.split(".")[2] not in gw.output() and bad["expired"].split(".")[2] not in gw.output()


async def test_a_token_for_kafka_a_star_opens_only_matching_streams(
    rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    gw = start_gateway(**AUTH_ENV)
    tok = token(("kafka:a*",), jti="tok-1")
    client = await WsClient.connect(f"{gw.ws_url}?token={tok}")
    await client.subscribe("kafka:a1")
    for stream in ("kafka:b", "kafka:ba", "file:a1:/var/log/a1", "file:web-1:/var/log/syslog"):
        await client.subscribe(stream)
        error = [f for f in client.frames if f.get("stream") == stream][-1]
        assert (error["type"], error["code"]) == ("error", "forbidden"), error
    publish(rclient, prefix, "kafka:a1", ["allowed line"])
    publish(rclient, prefix, "kafka:b", ["secret line"])
    await client.wait_for(lambda: client.texts("kafka:a1") == ["allowed line"], what="the allowed stream's line")
    await client.send({"op": "ping"})
    await client.wait_for(lambda: client.of_type("pong"), what="pong")
    assert "kafka:b" not in client.lines
    await client.close()

    # /api/streams lists only what the caller may open, whichever way the token comes.
    publish(rclient, prefix, "kafka:a2", ["x"])
    for headers, query in (({"Authorization": f"Bearer {tok}"}, ""), ({}, f"?token={tok}")):
        status, _, body = http(gw.base + "/api/streams" + query, headers)
        assert status == 200
        assert sorted(s["stream"] for s in json.loads(body)["streams"]) == ["kafka:a1", "kafka:a2"]
    wide = token(("kafka:*",), sub="ops")
    _, _, body = http(gw.base + "/api/streams", {"Authorization": f"Bearer {wide}"})
    assert {"kafka:a1", "kafka:a2", "kafka:b"} <= {s["stream"] for s in json.loads(body)["streams"]}
    # No file pattern: no minion may be listed, before anything is asked of Salt.
    status, _, body = http(gw.base + "/api/minions/web-1/files", {"Authorization": f"Bearer {tok}"})
    assert status == 403 and json.loads(body)["error"] == "forbidden"

    records = audit_records(gw)
    subscribes = {(r["stream"], r["decision"]) for r in records if r["event"] == "subscribe"}
    assert ("kafka:a1", "grant") in subscribes and ("kafka:b", "refuse") in subscribes
    assert ("file:a1:/var/log/a1", "refuse") in subscribes
    mine = [r for r in records if r.get("jti") == "tok-1"]
    assert mine and all(r["user"] == "alice" and r["via"] == "token" and r["from"] == "127.0.0.1" for r in mine)
    assert any(r["event"] == "list_files" and r["decision"] == "refuse" for r in records)
    assert metric(gw, "tailgate_gateway_access_refusals_total", 'reason="forbidden"') >= 5


async def test_the_console_page_sets_an_httponly_cookie_that_authenticates_later_calls(
    rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    gw = start_gateway(**AUTH_ENV)
    tok = token(("kafka:a*",))
    status, headers, _ = http(f"{gw.base}/?token={tok}")
    assert status == 200 and headers["Referrer-Policy"] == "no-referrer"
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"tailgate_token={tok};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "expires=" in cookie.lower()
    assert "Path=" not in cookie  # the browser scopes it to the console's own directory (proxy prefixes)
    assert "Set-Cookie" not in http(f"{gw.base}/?token={token(key='w' * 40)}")[1]  # invalid: no cookie
    jar = {"Cookie": f"tailgate_token={tok}"}
    assert http(gw.base + "/api/streams", jar)[0] == 200
    client = await WsClient.connect(gw.ws_url, additional_headers=jar)
    await client.subscribe("kafka:a9")
    assert client.of_type("subscribed")
    await client.close()


def test_the_cookie_is_secure_when_a_trusted_proxy_says_the_page_came_over_tls(start_gateway) -> None:
    tok = token(("kafka:a*",))
    behind = start_gateway(**AUTH_ENV, TAILGATE_AUTH_TRUSTED_PROXIES="127.0.0.1")
    tls = {"X-Forwarded-Proto": "https"}
    assert "Secure" in http(f"{behind.base}/?token={tok}", tls)[1]["Set-Cookie"]
    assert "Secure" not in http(f"{behind.base}/?token={tok}")[1]["Set-Cookie"]  # plain http: it would be dropped
    alone = start_gateway(**AUTH_ENV)  # trusts no proxy: a client's own header means nothing
    assert "Secure" not in http(f"{alone.base}/?token={tok}", tls)[1]["Set-Cookie"]


async def test_the_handshake_checks_the_origin(start_gateway) -> None:
    gw = start_gateway(**AUTH_ENV, TAILGATE_ALLOWED_ORIGINS="https://logs.example.com, http://console.test:8080")
    url = f"{gw.ws_url}?token={token()}"
    assert await handshake_status(url, origin="https://evil.example") == 403
    assert await handshake_status(url, origin=f"http://127.0.0.1:{gw.port}") == 403  # not listed
    for origin in ("https://logs.example.com", "HTTP://console.test:8080"):
        client = await WsClient.connect(url, origin=origin)
        await client.send({"op": "ping"})
        await client.wait_for(lambda c=client: c.of_type("pong"), what="pong")
        await client.close()
    assert metric(gw, "tailgate_gateway_access_refusals_total", 'reason="origin"') == 2
    assert any(r.get("origin") == "https://evil.example" for r in audit_records(gw))
    # Without configured origins: the page's own host only (cross-site WebSocket hijacking).
    plain = start_gateway(**AUTH_ENV)
    url = f"{plain.ws_url}?token={token()}"
    assert await handshake_status(url, origin="https://evil.example") == 403
    client = await WsClient.connect(url, origin=f"http://127.0.0.1:{plain.port}")
    await client.close()


async def test_connections_are_limited_per_user_and_per_address(start_gateway) -> None:
    gw = start_gateway(
        **AUTH_ENV, TAILGATE_AUTH_MAX_CONNECTIONS_PER_USER="2", TAILGATE_AUTH_MAX_CONNECTIONS_PER_ADDRESS="3"
    )
    alice = [await WsClient.connect(f"{gw.ws_url}?token={token(sub='alice')}") for _ in range(3)]
    assert await wait_closed(alice[2]) == 4029
    assert alice[2].ws.close_reason == "too many connections for this user"
    bob = [await WsClient.connect(f"{gw.ws_url}?token={token(sub='bob')}") for _ in range(2)]
    assert await wait_closed(bob[1]) == 4029  # the address already has three
    assert bob[1].ws.close_reason == "too many connections from this address"
    for c in alice[:2]:
        await c.send({"op": "ping"})
        await c.wait_for(lambda c=c: c.of_type("pong"), what="pong")
        assert c.closed_code is None
    await alice[0].close()  # a slot frees as soon as a connection ends
    again = await WsClient.connect(f"{gw.ws_url}?token={token(sub='carol')}")
    await again.send({"op": "ping"})
    await again.wait_for(lambda: again.of_type("pong") or again.closed_code, what="pong")
    assert again.of_type("pong")
    assert metric(gw, "tailgate_gateway_limit_refusals_total", 'limit="connections_per_user"') == 1
    assert metric(gw, "tailgate_gateway_limit_refusals_total", 'limit="connections_per_address"') == 1
    for c in (alice[1], bob[0], again):
        await c.close()


async def test_control_messages_are_rate_limited_and_a_flood_is_disconnected(start_gateway) -> None:
    gw = start_gateway(**AUTH_ENV, TAILGATE_GATEWAY_CONTROL_RATE="5", TAILGATE_GATEWAY_CONTROL_BURST="10")
    url = f"{gw.ws_url}?token={token()}"
    client = await WsClient.connect(url)
    for _ in range(15):
        await client.send({"op": "ping"})
    await client.wait_for(lambda: len(client.frames) >= 15, what="15 answers")
    assert len(client.of_type("pong")) == 10
    limited = [f for f in client.frames if f.get("code") == "rate_limited"]
    assert len(limited) == 5 and "slow down" in limited[0]["message"]
    await client.send({"op": "subscribe", "stream": "kafka:a1"})  # a refused subscribe names its stream
    await client.wait_for(lambda: client.frames[-1].get("stream") == "kafka:a1", what="answer")
    assert client.frames[-1]["code"] == "rate_limited"
    await asyncio.sleep(0.4)  # the bucket refills with time (5/s): the wait is the behaviour under test
    await client.send({"op": "ping"})
    await client.wait_for(lambda: len(client.of_type("pong")) == 11, what="pong after a pause")
    assert client.closed_code is None
    await client.close()

    flood = await WsClient.connect(url)
    for _ in range(200):
        if flood.closed_code is not None:
            break
        try:
            await flood.send({"op": "ping"})
        except websockets.ConnectionClosed:
            break
    assert await wait_closed(flood) == 1008
    assert flood.ws.close_reason == "too many messages: rate limit exceeded"
    assert metric(gw, "tailgate_gateway_limit_refusals_total", 'limit="rate"') >= 15


async def test_size_and_count_limits_answer_their_error_and_are_counted(start_gateway) -> None:
    gw = start_gateway(
        **AUTH_ENV,
        TAILGATE_GATEWAY_MAX_FRAME_BYTES="4096",
        TAILGATE_GATEWAY_MAX_SUBSCRIPTIONS="2",
        TAILGATE_GATEWAY_MAX_PATTERN_CHARS="50",
        TAILGATE_GATEWAY_MAX_BACKLOG="100",
    )
    url = f"{gw.ws_url}?token={token()}"
    client = await WsClient.connect(url)
    await client.subscribe("kafka:a1")
    await client.subscribe("kafka:a2")
    await client.subscribe("kafka:a3")
    await client.subscribe("kafka:a1", regex="x" * 51)
    await client.subscribe("kafka:a1", keyword="y" * 51)
    await client.subscribe("kafka:a1", backlog=101)
    codes = [(f.get("stream"), f.get("code")) for f in client.of_type("error")]
    assert codes == [("kafka:a3", "too_large"), ("kafka:a1", "too_large"), ("kafka:a1", "too_large"),
                     ("kafka:a1", "too_large")]  # fmt: skip
    # A frame over the limit: the client is told `too_large`, then the connection closes with 1009.
    await client.send(json.dumps({"op": "ping", "pad": "p" * 5000}))
    assert await wait_closed(client) == 1009
    last = client.of_type("error")[-1]
    assert last["code"] == "too_large" and "4096 bytes" in last["message"]
    for limit, count in (("subscriptions", 1), ("pattern", 2), ("backlog", 1), ("frame_size", 1)):
        assert metric(gw, "tailgate_gateway_limit_refusals_total", f'limit="{limit}"') == count, limit
    # Nothing else was affected: a new connection works.
    other = await WsClient.connect(url)
    await other.subscribe("kafka:a1")
    assert other.of_type("subscribed")
    await other.close()


async def test_a_connection_is_closed_with_4001_when_its_token_expires(
    rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    gw = start_gateway(**AUTH_ENV)
    tok = token(ttl=3)
    expires = jwt.decode(tok, SECRET, algorithms=["HS256"])["exp"]
    client = await WsClient.connect(f"{gw.ws_url}?token={tok}")
    await client.subscribe("kafka:a1")
    publish(rclient, prefix, "kafka:a1", ["before expiry"])
    await client.wait_for(lambda: client.texts("kafka:a1") == ["before expiry"], what="a line while valid")
    assert await wait_closed(client, timeout=10) == 4001
    closed_at = time.time()
    assert client.ws.close_reason == "token expired"
    assert expires - 0.5 <= closed_at <= expires + 3, (closed_at, expires)
    assert any(r["event"] == "expire" and r["user"] == "alice" for r in audit_records(gw))
    assert metric(gw, "tailgate_gateway_access_refusals_total", 'reason="expired"') == 1
    # Reconnecting with the same token is refused; a fresh one works.
    assert await handshake_status(f"{gw.ws_url}?token={tok}") == 401
    fresh = await WsClient.connect(f"{gw.ws_url}?token={token()}")
    await fresh.subscribe("kafka:a1")
    assert fresh.of_type("subscribed")
    await fresh.close()


def _pem(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


async def test_rs256_and_es256_public_keys_and_the_trusted_proxy_header(
    rclient: redis.Redis, prefix: str, start_gateway, tmp_path: Path
) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = tmp_path / "tailgate-keys.pem"
    keys.write_bytes(_pem(rsa_key) + _pem(ec_key))  # two keys: e.g. during a key rotation
    gw = start_gateway(
        TAILGATE_AUTH_PUBLIC_KEY=str(keys),
        TAILGATE_SALT_MODE="off",
        TAILGATE_AUTH_TRUSTED_PROXIES="127.0.0.1",
        TAILGATE_AUTH_PROXY_USER_HEADER="X-Remote-User",
        TAILGATE_AUTH_PROXY_STREAMS="kafka:p*",
    )
    for key, alg in ((rsa_key, "RS256"), (ec_key, "ES256")):
        client = await WsClient.connect(f"{gw.ws_url}?token={token(key=key, alg=alg, sub=alg)}")
        await client.subscribe("kafka:a1")
        await client.subscribe("kafka:b1")
        assert [f.get("type") if f["type"] != "error" else f["code"] for f in client.frames] == [
            "subscribed",
            "forbidden",
        ], alg
        await client.close()
    assert await handshake_status(f"{gw.ws_url}?token={token(key=stranger, alg='RS256')}") == 401
    assert await handshake_status(f"{gw.ws_url}?token={token()}") == 401  # HS256 is never accepted here
    # The proxy's user header (the gateway sees the proxy at 127.0.0.1) grants proxy_streams.
    proxied = await WsClient.connect(gw.ws_url, additional_headers={"X-Remote-User": "dave"})
    await proxied.subscribe("kafka:p1")
    await proxied.subscribe("kafka:a1")
    assert [f.get("code", f["type"]) for f in proxied.frames] == ["subscribed", "forbidden"]
    publish(rclient, prefix, "kafka:p1", ["via proxy"])
    await proxied.wait_for(lambda: proxied.texts("kafka:p1") == ["via proxy"], what="line")
    await proxied.close()
    users = {(r["user"], r["via"]) for r in audit_records(gw) if r["event"] == "subscribe"}
    assert {("RS256", "token"), ("ES256", "token"), ("dave", "proxy")} <= users
