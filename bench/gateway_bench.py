"""Gateway benchmarks (issue 4): fan-out, many streams, idle connections, Redis connections.

    .venv/bin/python -m bench.gateway_bench            # everything, about 2 minutes
    .venv/bin/python -m bench.gateway_bench --only fanout

Each scenario runs against a fresh gateway process pinned to core 0, and the load
generator (bench/wsload.py, a bare asyncio WebSocket client) alone on core 1, so a
saturated client is not mistaken for a slow gateway; the load generator's CPU is
reported. Redis and the publisher share the gateway's core (`--infra-core 0`, the
default): on two cores something must share, and with them beside the load generator
instead (`--infra-core 1`) that core saturated in the many-streams scenario and its own
queueing was half the latency measured. The fan-out and many-streams scenarios also run against
bench/naive_gateway.py (JSON encoded per client) in the same run, as the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import redis

from embedded import RedisServer, free_port, gateway_ready, wait_until

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
GATEWAY_CORE, LOAD_CORE = "0", "1"


def pinned(core: str, args: list[str]) -> list[str]:
    return ["taskset", "-c", core, *args]


def spawn(args: list[str], env: dict[str, str] | None = None, root: Path = ROOT, **kw) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=root, env={**os.environ, "PYTHONPATH": str(root), **(env or {})}, **kw)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wsload(port: int, clients: int, streams: str, *args: str, **kw: Any) -> subprocess.Popen:
    """The load generator on the load core; it prints JSON lines on stdout."""
    cmd = [PY, "-m", "bench.wsload", "--url", f"ws://127.0.0.1:{port}/ws", "--clients", str(clients)]
    return spawn(pinned(LOAD_CORE, [*cmd, "--streams", streams, *args]), stdout=subprocess.PIPE, text=True, **kw)


def start_gateway(
    kind: str, redis_url: str, prefix: str, port: int, log: Path, root: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """The gateway under test (from the tree at `root`: another commit's, for a before/after;
    `env`: more settings, e.g. the Redis mode)."""
    out = open(log, "ab")  # noqa: SIM115
    if kind == "tailgate":
        settings = {
            "TAILGATE_REDIS_URL": redis_url,
            "TAILGATE_REDIS_PREFIX": prefix,
            "TAILGATE_GATEWAY_PORT": str(port),
        }
        args = pinned(GATEWAY_CORE, [PY, "-m", "gateway", "--log-level", "WARNING"])
        proc = spawn(args, {**settings, **(env or {})}, root, stdout=out, stderr=out)
        wait_until(lambda: gateway_ready(port), 20, what="gateway ready")
    else:
        args = [PY, "-m", "bench.naive_gateway", "--redis", redis_url, "--prefix", prefix, "--port", str(port)]
        proc = spawn(pinned(GATEWAY_CORE, args), stdout=out, stderr=out)
        wait_until(lambda: _port_open(port), 20, what="naive gateway up")
    return proc


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def gateway_redis_connections(r: redis.Redis) -> int:
    return sum(1 for c in r.client_list() if c.get("name", "").startswith("tailgate-gateway"))


def load_run(
    kind: str,
    server: RedisServer,
    clients: int,
    streams: list[str],
    rate: float,
    seconds: float,
    tmp: Path,
    infra_core: str = GATEWAY_CORE,
    load_args: tuple[str, ...] = (),
    root: Path = ROOT,
) -> dict:
    prefix = f"b{time.monotonic_ns()}:"
    port = free_port()
    gw = start_gateway(kind, server.url, prefix, port, tmp / f"{kind}-{port}.log", root)
    r = redis.Redis.from_url(server.url)
    warmup = 3.0
    try:
        load = wsload(port, clients, ",".join(streams), "--seconds", str(seconds), "--warmup", str(warmup), *load_args)
        ready = json.loads(load.stdout.readline())
        assert ready["event"] == "ready", ready
        publisher = spawn(
            pinned(
                infra_core,
                [
                    PY,
                    "-m",
                    "bench.publisher",
                    "--redis",
                    server.url,
                    "--prefix",
                    prefix,
                    "--streams",
                    ",".join(streams),
                    "--rate",
                    str(rate),
                    "--seconds",
                    str(warmup + seconds + 3),
                ],
            ),
            stdout=subprocess.DEVNULL,
        )
        gproc = psutil.Process(gw.pid)
        time.sleep(warmup)
        cpu0 = sum(gproc.cpu_times()[:2])
        conns = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            conns = max(conns, gateway_redis_connections(r))
            time.sleep(0.5)
        gw_cpu = (sum(gproc.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0)
        result = json.loads(load.stdout.readline())
        load.wait(30)
        stop(publisher)
        result.update(kind=kind, gateway_cpu=round(gw_cpu, 2), rate=rate, streams=len(streams))
        if kind == "tailgate":
            result["gateway_redis_connections"] = conns
        return result
    finally:
        stop(gw)


def idle_run(server: RedisServer, clients: int, tmp: Path) -> dict:
    prefix = f"i{time.monotonic_ns()}:"
    port = free_port()
    gw = start_gateway("tailgate", server.url, prefix, port, tmp / f"idle-{port}.log")
    r = redis.Redis.from_url(server.url)
    try:
        gproc = psutil.Process(gw.pid)
        time.sleep(1)
        rss0 = gproc.memory_info().rss
        streams = ",".join(f"kafka:quiet{i}" for i in range(10))
        load = wsload(port, clients, streams, "--hold", stdin=subprocess.PIPE)
        ready = json.loads(load.stdout.readline())
        time.sleep(2)
        rss1 = gproc.memory_info().rss
        conns = gateway_redis_connections(r)
        load.stdin.close()
        load.wait(60)
        return {
            "kind": "tailgate",
            "scenario": "idle",
            "clients": ready["connected"],
            "rss_before_mib": round(rss0 / 2**20, 1),
            "rss_after_mib": round(rss1 / 2**20, 1),
            "kib_per_connection": round((rss1 - rss0) / ready["connected"] / 1024, 1),
            "gateway_redis_connections": conns,
        }
    finally:
        stop(gw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["fanout", "many", "idle"], action="append")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--infra-core", choices=[GATEWAY_CORE, LOAD_CORE], default=GATEWAY_CORE)
    args = parser.parse_args()
    infra = args.infra_core  # Redis and the publisher
    only = set(args.only or ["fanout", "many", "idle"])
    tmp = Path(tempfile.mkdtemp(prefix="tailgate-bench-"))
    server = RedisServer(workdir=str(tmp)).start()
    subprocess.run(["taskset", "-pc", infra, str(server.proc.pid)], check=True, stdout=subprocess.DEVNULL)
    results = []
    kinds = ["tailgate"] if args.no_baseline else ["tailgate", "naive"]
    try:
        if "fanout" in only:
            for kind in kinds:
                res = load_run(kind, server, 500, ["kafka:fanout"], 1000, args.seconds, tmp, infra)
                results.append({"scenario": "fanout 1 stream x 500 clients @1000 lines/s", **res})
                print(json.dumps(results[-1]), flush=True)
        if "many" in only:
            streams = [f"kafka:s{i:03d}" for i in range(200)]
            for kind in kinds:
                res = load_run(kind, server, 1000, streams, 20000, args.seconds, tmp, infra)
                results.append({"scenario": "200 streams x 5 clients @20000 lines/s", **res})
                print(json.dumps(results[-1]), flush=True)
        if "idle" in only:
            results.append(idle_run(server, 10_000, tmp))
            print(json.dumps(results[-1]), flush=True)
    finally:
        server.stop()
    write_results("gateway.json", results)


def write_results(name: str, results: list[dict], **more: Any) -> None:
    """bench/results/<name>: the results with the machine, the time and its load average
    (and `more` facts about the run)."""
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    meta = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.processor() or platform.platform()}",
        "python": platform.python_version(),
        "at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average": os.getloadavg(),
        **more,
    }
    (out / name).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"written {out / name}")


if __name__ == "__main__":
    main()
