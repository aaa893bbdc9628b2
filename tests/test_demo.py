"""`make run`'s program (python -m embedded.run): it prints the console URL, Kafka and
file streams reach a viewer, and Ctrl-C, once or twice, leaves nothing running; with
TAILGATE_REPLICAS=3 it runs three gateways behind HAProxy on the same URL; with
TAILGATE_REDIS_MODE=cluster it starts a Redis Cluster of its own and runs on it.

The demo runs on the session's Redis (a prefix of its own) and broker, as it would on
a machine where they already answer; it starts its own bridge, gateway, producer and
Salt master and minion. Ctrl-C is a SIGINT to the demo's process group, as a terminal
sends it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from embedded import KafkaBroker, RedisServer, free_port, wait_until
from tests.support import ROOT, WsClient, http_get, service_env
from wire import Keys
from wire.cluster import sync_client

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the demo's Salt master and minion need root")


class Demo:
    def __init__(
        self, redis_server: RedisServer, kafka: KafkaBroker, prefix: str, tmp_path: Path, **extra: str
    ) -> None:
        self.out = tmp_path / "demo.out"
        env = service_env(
            TAILGATE_REDIS_URL=redis_server.url,
            TAILGATE_REDIS_PREFIX=prefix,
            TAILGATE_KAFKA_BOOTSTRAP=kafka.bootstrap,
            TAILGATE_GATEWAY_PORT=str(free_port()),
            **extra,
        )
        self.seen: set[int] = set()  # every process ever found below the demo
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "embedded.run"],
            cwd=ROOT,
            env=env,
            stdout=self.out.open("wb"),
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as from a terminal
        )

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def ready(self) -> tuple[str, str]:
        """The console URL and the file stream the demo prints once everything is up."""
        wait_until(lambda: "Tailgate is running" in self.text() or self.proc.poll() is not None, 120, 0.2)
        assert self.proc.poll() is None, self.text()[-3000:]
        url = re.search(r"Console: (http://127\.0\.0\.1:\d+/)", self.text())
        stream = re.search(r"A file on a Salt minion: (\S+)", self.text())
        assert url and stream, self.text()[-3000:]
        return url.group(1), stream.group(1)

    def descendants(self) -> set[int]:
        """Every process below the demo (its daemons run in sessions of their own)."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        found, frontier = set(), {self.proc.pid}
        while frontier:
            frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
            found |= frontier
        self.seen |= found
        return found

    def interrupt(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)

    def exit_code(self, timeout: float) -> int:
        """Its exit status, failing with the end of its output if it runs past `timeout`."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the demo still runs {timeout}s later; its output ends:\n{self.text()[-4000:]}")


def alive(pids: set[int]) -> set[int]:
    """The ones still running (a zombie has finished)."""
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(pid)
    return out


def stopped(d: Demo) -> None:
    if d.proc.poll() is None:
        d.descendants()
        d.interrupt()
        d.interrupt()
        d.proc.wait(30)
    for pid in alive(d.seen):  # whatever a failed test left behind
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def demo(redis_server: RedisServer, kafka: KafkaBroker, prefix: str, tmp_path: Path) -> Iterator[Demo]:
    d = Demo(redis_server, kafka, prefix, tmp_path)
    yield d
    stopped(d)


@pytest.fixture
def fleet_demo(redis_server: RedisServer, kafka: KafkaBroker, prefix: str, tmp_path: Path) -> Iterator[Demo]:
    d = Demo(redis_server, kafka, prefix, tmp_path, TAILGATE_REPLICAS="3")
    yield d
    stopped(d)


@pytest.fixture
def cluster_demo(redis_server: RedisServer, kafka: KafkaBroker, prefix: str, tmp_path: Path) -> Iterator[Demo]:
    d = Demo(redis_server, kafka, prefix, tmp_path, TAILGATE_REDIS_MODE="cluster")
    yield d
    stopped(d)


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


async def test_the_demo_shows_kafka_and_file_streams_and_ctrl_c_stops_everything(demo: Demo) -> None:
    url, file_stream = demo.ready()
    ws_url = url.replace("http://", "ws://") + "ws"
    client = await WsClient.connect(ws_url)
    await client.subscribe("kafka:app-events/checkout")
    await client.subscribe("kafka:nginx-access")
    await client.subscribe(file_stream)
    for stream in ("kafka:app-events/checkout", "kafka:nginx-access", file_stream):
        await client.wait_for(lambda s=stream: client.texts(s), timeout=60, what=f"lines of {stream}")
    started = demo.descendants()
    assert len(started) >= 5  # redis is the session's; the broker too; the rest are the demo's
    await client.close()

    demo.interrupt()
    assert demo.exit_code(60) == 0
    wait_until(lambda: not alive(started), 15, 0.2, what="every process the demo started to end")
    assert "stopping everything this run started" in demo.text()


async def test_a_second_ctrl_c_kills_what_is_left_at_once(demo: Demo) -> None:
    demo.ready()
    started = demo.descendants()
    assert len(started) >= 5
    demo.interrupt()
    wait_until(lambda: "stopping everything" in demo.text(), 10, 0.05, what="the demo to start stopping")
    demo.interrupt()
    assert demo.exit_code(15) == 0
    wait_until(lambda: not alive(started), 10, 0.2, what="every process the demo started to end")
    assert "interrupted again: killing what is still running" in demo.text()


async def test_the_demo_as_a_fleet_serves_through_haproxy_and_ctrl_c_stops_it_all(fleet_demo: Demo) -> None:
    url, file_stream = fleet_demo.ready()
    fleet = r"Tailgate is running: 3 gateways \(ports (\d+), (\d+), (\d+)\) behind HAProxy"
    banner = re.search(fleet, fleet_demo.text())
    assert banner, fleet_demo.text()[-2000:]
    for port in banner.groups():
        assert http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200
    assert http_get(url + "metrics")[0] == 404, "the balancer keeps /metrics to the replicas"
    client = await WsClient.connect(url.replace("http://", "ws://") + "ws")
    for stream in ("kafka:nginx-access", file_stream):
        await client.subscribe(stream)
        await client.wait_for(lambda s=stream: client.texts(s), timeout=60, what=f"lines of {stream}")
    started = fleet_demo.descendants()
    assert [pid for pid in started if command(pid) == "haproxy"], "HAProxy runs under the demo"
    await client.close()

    fleet_demo.interrupt()
    assert fleet_demo.exit_code(60) == 0
    wait_until(lambda: not alive(started), 15, 0.2, what="every process the demo started to end")


async def test_the_demo_on_a_redis_cluster_starts_one_and_ctrl_c_stops_it_all(
    cluster_demo: Demo, redis_server: RedisServer, prefix: str
) -> None:
    url, file_stream = cluster_demo.ready()
    banner = re.search(r"started a Redis Cluster \(3 primaries, 3 replicas\) at (\S+(?:, \S+){5})", cluster_demo.text())
    assert banner, cluster_demo.text()[-2000:]
    seeds = banner.group(1).split(", ")
    client = await WsClient.connect(url.replace("http://", "ws://") + "ws")
    streams = ("kafka:app-events/checkout", "kafka:nginx-access", file_stream)
    for stream in streams:
        await client.subscribe(stream)
        await client.wait_for(lambda s=stream: client.texts(s), timeout=60, what=f"lines of {stream}")
    await client.close()
    # the bridge and the tail agent published to the cluster, in its layout; nothing to the single Redis
    keys = Keys(prefix, cluster=True)
    cluster = sync_client("redis://", seeds)
    try:
        assert all(cluster.xlen(keys.hist(s)) for s in streams)
    finally:
        cluster.close()
    with redis.Redis.from_url(redis_server.url) as single:
        assert not list(single.scan_iter(match=f"{prefix}*"))
    _, metrics = http_get(url + "metrics")
    assert metrics.decode().count("tailgate_gateway_redis_shard_connections{") == 3
    running = cluster_demo.descendants()
    assert sum(command(pid) == "redis-server" for pid in running) == 6

    cluster_demo.interrupt()
    assert cluster_demo.exit_code(60) == 0
    wait_until(lambda: not alive(running), 15, 0.2, what="every process the demo started to end")
