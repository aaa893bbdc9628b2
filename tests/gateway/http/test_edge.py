"""The HTTP edge through real gateway processes: which host names are answered (DNS
rebinding with authentication off), cross-origin API calls, and connections that never
finish their request (slow handshakes) under a low open-files limit."""

from __future__ import annotations

import asyncio
import json
import resource
import selectors
import socket
import time
from http.client import HTTPConnection
from pathlib import Path

import redis

from tests.support import (
    AUTH_ENV,
    GatewayProc,
    Service,
    WsClient,
    audit_records,
    http,
    metric,
    token,
)
from wire import Keys, Line, Publisher, StreamBatch, encode_line

UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}
REFUSALS = "tailgate_gateway_access_refusals_total"


def get(port: int, path: str, host: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET `path` naming `host` in the Host header, as a browser that resolved it to us would."""
    conn = HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, b"" if resp.status == 101 else resp.read()
    finally:
        conn.close()


def test_with_authentication_off_only_loopback_and_allowed_host_names_are_answered(start_gateway) -> None:
    gw = start_gateway(TAILGATE_GATEWAY_ALLOWED_HOSTS="logs.internal, console.test:8443")
    port = gw.port
    # A page on a rebinding domain: to the browser it is same-origin, so Origin and Host agree.
    rebound = f"rebind.attacker.example:{port}"
    origin = {"Origin": f"http://{rebound}"}
    paths = {"/": {}, "/static/app.js": {}, "/api/streams": origin, "/api/minions/web-1/files": origin,
             "/metrics": {}, "/ws": {**UPGRADE, **origin}}  # fmt: skip
    for path, headers in paths.items():
        status, body = get(port, path, rebound, headers)
        assert status == 421, path
        answer = json.loads(body)
        assert answer["error"] == "forbidden" and "gateway.allowed_hosts" in answer["message"], answer
    # The probes say only "up" and "ready", and load balancers address them by IP.
    assert [get(port, p, rebound)[0] for p in ("/healthz", "/readyz")] == [200, 200]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LocalHost", f"[::1]:{port}", "127.0.0.2",
                 f"logs.internal:{port}", "logs.internal", "console.test:8443"):  # fmt: skip
        assert get(port, "/api/streams", host)[0] == 200, host
    assert get(port, "/api/streams", "console.test:8080")[0] == 421  # listed for another port only
    listed = f"logs.internal:{port}"
    assert get(port, "/ws", listed, {**UPGRADE, "Origin": f"http://{listed}"})[0] == 101
    assert metric(gw, REFUSALS, 'reason="host"') == len(paths) + 1
    refused = [r for r in audit_records(gw) if r["event"] == "request"]
    assert {r["path"] for r in refused} == {*paths, "/api/streams"} and refused[0]["host"] == rebound


def test_cross_origin_api_calls_are_refused_before_any_work(start_gateway) -> None:
    gw = start_gateway()

    def api(path: str, **headers: str) -> tuple[int, dict]:
        status, _, body = http(gw.base + path, headers)
        return status, json.loads(body)

    assert api("/api/streams")[0] == 200  # no Origin: not a cross-site browser request
    assert api("/api/streams", Origin=f"http://127.0.0.1:{gw.port}")[0] == 200
    for origin in ("https://evil.example", "null", f"http://127.0.0.1:{gw.port + 1}"):
        # The file listing would otherwise ask Salt for a minion's files.
        for path in ("/api/streams", "/api/minions", "/api/minions/web-1/files"):
            status, body = api(path, Origin=origin)
            assert (status, body["error"]) == (403, "forbidden") and "cross-origin" in body["message"], path
    assert metric(gw, REFUSALS, 'reason="origin"') == 9

    # With authentication on, configured origins decide, and the Host is not checked:
    # a token is what protects (a rebinding page holds none).
    authed = start_gateway(**AUTH_ENV, TAILGATE_ALLOWED_ORIGINS="https://logs.example.com")
    bearer = {"Authorization": f"Bearer {token()}"}

    def status(host: str, origin: str | None) -> int:
        return get(authed.port, "/api/streams", host, {**bearer, **({"Origin": origin} if origin else {})})[0]

    assert status("logs.example.com", "https://logs.example.com") == 200
    assert status("logs.example.com", "https://evil.example") == 403
    assert status(f"127.0.0.1:{authed.port}", f"http://127.0.0.1:{authed.port}") == 403  # not listed
    assert get(authed.port, "/api/streams", "rebind.attacker.example")[0] == 401


HEADER_TIMEOUT = 4.0
STALLED = 300
LOW_SOFT_LIMIT = 128  # the gateway starts with fewer descriptors than stalled connections


def low_open_files_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_SOFT_LIMIT, hard))


def stall(port: int) -> list[socket.socket]:
    """Connections that never finish their request: most stop inside the request line
    (slowloris), a few send a whole head and then only part of the body it announces."""
    socks = []
    for i in range(STALLED):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if i % 60:
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0")
        else:
            sock.sendall(b"POST /api/streams HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\npartial")
        socks.append(sock)
    return socks


def wait_all_closed(socks: list[socket.socket], timeout: float) -> tuple[float, float]:
    """When (monotonic) the gateway closed the first and the last of `socks`; fails after `timeout`."""
    started, closed = time.monotonic(), []
    with selectors.DefaultSelector() as sel:
        for sock in socks:
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ)
        while len(closed) < len(socks):
            assert time.monotonic() - started < timeout, f"{len(socks) - len(closed)} stalled connections still open"
            for key, _ in sel.select(0.2):
                try:
                    data = key.fileobj.recv(4096)  # type: ignore[union-attr]
                except ConnectionResetError:
                    data = b""
                if not data:
                    sel.unregister(key.fileobj)
                    closed.append(time.monotonic())
    return closed[0], closed[-1]


async def test_half_open_connections_neither_lock_out_viewers_nor_stay_open(
    env: dict[str, str], services: list[Service], tmp_path: Path, rclient: redis.Redis, prefix: str
) -> None:
    timeouts = {"TAILGATE_GATEWAY_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "TAILGATE_GATEWAY_BODY_TIMEOUT": "4"}
    gw = GatewayProc(dict(env, **timeouts), log_dir=tmp_path, preexec=low_open_files_limit)
    services.append(gw)
    gw.start()
    first_opened = time.monotonic()
    socks = await asyncio.to_thread(stall, gw.port)
    stalled_at = time.monotonic()
    try:
        # A real viewer still connects and gets its lines while every stalled socket is open.
        client = await WsClient.connect(gw.ws_url, open_timeout=HEADER_TIMEOUT)
        await client.subscribe("kafka:edge")
        Publisher(rclient, Keys(prefix)).publish([StreamBatch("kafka:edge", [(0, encode_line(Line(1.0, "served")))])])
        await client.wait_for(lambda: client.texts("kafka:edge") == ["served"], what="the viewer's line")
        assert time.monotonic() - stalled_at < HEADER_TIMEOUT  # so none had been closed yet
        # The stalled ones are closed once their head (or body) is overdue, not an hour later.
        first, last = await asyncio.to_thread(wait_all_closed, socks, HEADER_TIMEOUT + 10)
        assert first - first_opened >= HEADER_TIMEOUT - 0.2 and last - stalled_at <= HEADER_TIMEOUT + 10
        # The viewer, past its handshake, is not subject to those timeouts.
        await client.send({"op": "ping"})
        await client.wait_for(lambda: client.of_type("pong"), what="pong")
        assert client.closed_code is None
        await client.close()
    finally:
        for sock in socks:
            sock.close()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert f"open files limit: {hard} (hard limit {hard})" in gw.output()
