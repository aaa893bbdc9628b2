"""conf/haproxy.cfg and conf/nginx.conf as shipped: each passes its own balancer's check,
and run in front of real replicas (only their ports changed) each carries the console
under / and /tailgate/ and its WebSocket, refuses the probes and /metrics, hands the
replicas the client's address in place of any a client claims, and logs no query string."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
import redis

from embedded import free_port, wait_until
from embedded.balancer import HAPROXY_CFG, NGINX_CONF, HAProxy, Nginx, binary
from tests.fleet.conftest import start_replicas
from tests.support import AUTH_ENV, WsClient, http, token
from wire import Keys, Line, Publisher, StreamBatch, encode_line

CLIENT = "127.0.0.3"  # the viewer connects from here; the balancer reaches the replicas from 127.0.0.1


def test_the_shipped_configs_pass_their_balancers_checks(tmp_path: Path) -> None:
    haproxy = subprocess.run([binary("haproxy"), "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True)
    assert haproxy.returncode == 0, haproxy.stdout + haproxy.stderr
    (tmp_path / "logs").mkdir()
    args = [binary("nginx"), "-t", "-p", str(tmp_path), "-c", str(NGINX_CONF)]
    nginx = subprocess.run(args, capture_output=True, text=True)
    assert nginx.returncode == 0 and "test is successful" in nginx.stderr, nginx.stderr


@pytest.fixture(params=["haproxy", "nginx"])
def balanced(request: pytest.FixtureRequest, env: dict[str, str], services: list, tmp_path: Path):
    """Two replicas with authentication on behind the balancer `request.param`."""
    replicas = start_replicas(2, {**env, **AUTH_ENV, "TAILGATE_GATEWAY_DRAIN_GRACE": "0"}, services, tmp_path)
    ports = [r.port for r in replicas]
    if request.param == "haproxy":
        balancer: HAProxy | Nginx = HAProxy(free_port(), ports, tmp_path)
    else:
        balancer = Nginx(free_port(), ports, tmp_path / "nginx")
        balancer.prefix.mkdir()
    checked = balancer.check()
    assert checked.returncode == 0, checked.stdout + checked.stderr
    services.append(balancer.start())
    return balancer, replicas


def access_log(balancer: HAProxy | Nginx) -> str:
    path = balancer.log_path if isinstance(balancer, HAProxy) else balancer.access_log
    return path.read_text(errors="replace")


async def test_a_balancer_carries_the_console_and_its_socket_and_nothing_else(
    balanced, rclient: redis.Redis, prefix: str
) -> None:
    balancer, replicas = balanced
    tok = token(("kafka:a*",))
    # A client's claim to have come over TLS is replaced by what the balancer knows (plain http)
    status, headers, page = http(f"{balancer.base}/tailgate/?token={tok}", {"X-Forwarded-Proto": "https"})
    assert status == 200 and b'src="static/app.js"' in page
    assert headers["Set-Cookie"].startswith(f"tailgate_token={tok};") and "Secure" not in headers["Set-Cookie"]
    assert http(f"{balancer.base}/tailgate/static/app.js")[0] == 200
    assert http(f"{balancer.base}/?token={tok}")[0] == 200
    for path in ("/metrics", "/healthz", "/readyz", "/tailgate/metrics", "/tailgate/readyz"):
        assert http(balancer.base + path)[0] == 404, path

    client = await WsClient.connect(
        f"ws://127.0.0.1:{balancer.port}/tailgate/ws?token={tok}",
        additional_headers={"X-Forwarded-For": "203.0.113.9"},  # a claim the balancer must not pass on
        local_addr=(CLIENT, 0),
    )
    await client.subscribe("kafka:a1")
    lines = [(0, encode_line(Line(0, "through the balancer")))]
    await asyncio.to_thread(Publisher(rclient, Keys(prefix)).publish, [StreamBatch("kafka:a1", lines)])
    await client.wait_for(lambda: client.texts("kafka:a1") == ["through the balancer"], what="the line")
    await client.close()

    audited = [line for r in replicas for line in r.output().splitlines() if '"event":"subscribe"' in line]
    assert len(audited) == 1 and f'"from":"{CLIENT}"' in audited[0], audited
    wait_until(lambda: "/tailgate/ws" in access_log(balancer), 5, what="the WebSocket in the access log")
    logged = access_log(balancer)
    assert "GET /tailgate/ HTTP" in logged
    assert tok not in logged and "token=" not in logged, "no query string in the access log"
