"""`python -m gateway --workers 2`: two worker processes on one port, each with its own
Redis pub/sub connection; one killed, the other's viewers unaffected and the dead one
replaced; /metrics summed over both, whichever answers; SIGTERM drains them all."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import psutil
import pytest
import redis

from embedded import RedisServer, wait_until
from tests.support import GatewayProc, Service, WsClient, metric
from wire import Keys, Line, Publisher, StreamBatch, encode_line

STREAM = "kafka:workers"
SENT = f'tailgate_gateway_lines_sent_total{{stream="{STREAM}"}}'


def workers_of(gw: GatewayProc) -> list[psutil.Process]:
    return psutil.Process(gw.proc.pid).children()


def owner(workers: list[psutil.Process], port: int, client: WsClient) -> int:
    """The pid of the worker holding `client`'s connection."""
    mine = client.ws.local_address[1]
    for w in workers:
        if any(c.laddr.port == port and c.raddr and c.raddr.port == mine for c in w.net_connections("tcp")):
            return w.pid
    raise LookupError("no worker holds the connection")


def pubsub_owners(workers: list[psutil.Process], rclient: redis.Redis, redis_port: int) -> list[int]:
    """The pids of the workers holding each `tailgate-gateway-pubsub` connection in CLIENT LIST."""
    local = {
        c.laddr.port: w.pid for w in workers for c in w.net_connections("tcp") if c.raddr and c.raddr.port == redis_port
    }
    named = [c for c in rclient.client_list() if c["name"] == "tailgate-gateway-pubsub"]
    return sorted(local[port] for c in named if (port := int(c["addr"].rsplit(":", 1)[1])) in local)


def publish(pub: Publisher, texts: list[str]) -> None:
    pub.publish([StreamBatch(STREAM, [(0, encode_line(Line(time.time(), t))) for t in texts])])


@pytest.fixture
def two_workers(env: dict[str, str], services: list[Service], tmp_path: Path) -> GatewayProc:
    gw = GatewayProc(dict(env, TAILGATE_SALT_MODE="off"), log_dir=tmp_path)
    gw.args = ["--workers", "2"]
    services.append(gw)
    gw.start()
    wait_until(lambda: len(workers_of(gw)) == 2, 10, what="two workers")
    return gw


async def test_two_workers_each_hold_their_own_pubsub_survive_each_other_and_sum_their_metrics(
    two_workers: GatewayProc, redis_server: RedisServer, rclient: redis.Redis, prefix: str
) -> None:
    gw = two_workers
    workers = workers_of(gw)
    pids = sorted(w.pid for w in workers)
    wait_until(lambda: pubsub_owners(workers, rclient, redis_server.port) == pids, 10, what="a pub/sub per worker")

    # Viewers until each worker holds at least three (the kernel hands connections to
    # whichever worker accepts first).
    clients: dict[int, list[WsClient]] = {pid: [] for pid in pids}
    while min(len(c) for c in clients.values()) < 3:
        assert sum(len(c) for c in clients.values()) < 60, "connections never reached one of the workers"
        client = await WsClient.connect(gw.ws_url)
        await client.subscribe(STREAM)
        clients[owner(workers, gw.port, client)].append(client)
    everyone = [c for cs in clients.values() for c in cs]
    pub = Publisher(rclient, Keys(prefix))
    await asyncio.to_thread(publish, pub, [f"first {i}" for i in range(10)])
    for c in everyone:
        await c.wait_for(lambda c=c: len(c.texts(STREAM)) == 10, what="the first lines")
    for _ in range(4):  # whichever worker answers, the figures are the sum over both
        assert metric(gw, "tailgate_gateway_connections") == len(everyone)
        assert metric(gw, SENT) == 10 * len(everyone)
        assert metric(gw, "tailgate_gateway_workers") == 2

    victim, survivor = pids
    psutil.Process(victim).kill()
    for c in clients[victim]:
        await c.wait_for(lambda c=c: c.closed_code is not None, what="the killed worker's viewers cut off")
    await asyncio.to_thread(publish, pub, ["after the kill"])
    for c in clients[survivor]:
        await c.wait_for(lambda c=c: c.texts(STREAM)[-1:] == ["after the kill"], what="the survivor's viewers served")
        assert c.closed_code is None
    wait_until(lambda: len(workers_of(gw)) == 2 and victim not in {w.pid for w in workers_of(gw)}, 10)
    assert "was killed by SIGKILL; starting another" in gw.output()
    wait_until(lambda: metric(gw, "tailgate_gateway_workers") == 2, 10, what="the replacement running")
    # what the dead worker sent still counts; its connections no longer do
    assert metric(gw, SENT) == 10 * len(everyone) + len(clients[survivor])
    assert metric(gw, "tailgate_gateway_connections") == len(clients[survivor])
    assert metric(gw, "tailgate_gateway_worker_restarts_total") == 1

    running = workers_of(gw)
    gw.signal(signal.SIGTERM)
    for c in clients[survivor]:
        await c.wait_for(lambda c=c: c.closed_code is not None, what="drained")
        assert c.closed_code == 1001
    assert await asyncio.to_thread(gw.wait, 10) == 0
    assert not [w for w in running if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


async def test_a_worker_takes_no_viewer_before_it_reaches_redis(
    env: dict[str, str], services: list[Service], tmp_path: Path
) -> None:
    # A balancer's /readyz reaches whichever worker accepts: a worker still connecting
    # (starting, restarted) must leave new viewers to the others, or they get `unavailable`.
    later = RedisServer(workdir=str(tmp_path))  # not running yet
    gw = GatewayProc(dict(env, TAILGATE_SALT_MODE="off", TAILGATE_REDIS_URL=later.url), log_dir=tmp_path)
    gw.args = ["--workers", "2"]
    services.append(gw)
    gw.start(wait=False)
    wait_until(lambda: len(workers_of(gw)) == 2 and "listening" in gw.output(), 10, what="the supervisor listening")
    handshake = asyncio.ensure_future(WsClient.connect(gw.ws_url))
    await asyncio.sleep(1.5)  # nothing happening is the point: no worker answers yet
    assert not handshake.done()
    services.append(later.start())
    client = await asyncio.wait_for(handshake, 10)
    await client.subscribe(STREAM)
    assert client.of_type("subscribed") and not client.of_type("error"), client.frames
    await client.close()
