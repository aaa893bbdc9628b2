"""One gateway worker against two (`python -m gateway --workers N`), in the same run.

    .venv/bin/python -m bench.workers_bench                 # both scenarios, 1 and 2 workers, two rounds
    .venv/bin/python -m bench.workers_bench --only many --rounds 1

For each scenario the runs alternate (1 worker, 2 workers, 1, 2, ...) against one
redis-server, each with a fresh gateway and the load generator (bench/wsload.py) and the
publisher (bench/publisher.py, lines through the real `wire.Publisher` step). Nothing is
pinned: the workers are meant to use every core, and on a machine with two the load
generator, Redis and the publisher compete with them for the same two cores, so a second
worker can only show what it costs or saves there, not what it would add on a machine
with cores to spare. Measured over 10 s after 3 s of warm-up: delivered lines/s (and
latency) at the load generator; CPU of the gateway (supervisor and workers together),
of Redis and of the load generator; gateway CPU per delivered line; the gateway's
resident memory (supervisor and workers); how the connections spread over the workers;
the gateway's pub/sub connections in `CLIENT LIST`.
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

from bench.gateway_bench import spawn, stop
from embedded import RedisServer, free_port, gateway_ready, wait_until

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
WARMUP, SETTLE = 3.0, 3.0
SCENARIOS = {
    # name: (clients, streams, lines/s published in total, a regex per client)
    "fanout": (500, ["kafka:fanout"], 1000, ""),
    "many": (1000, [f"kafka:s{i:03d}" for i in range(200)], 20000, ""),
    # every client its own filter on one busy stream (an incident: everyone greps for
    # their own thing): the filtering is the gateway's work, little reaches the clients
    "filters": (200, ["kafka:busy"], 10000, r"^0*\d+ 10\.0\.0\.{n} "),
}


def cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def connections_of(pid: int, port: int) -> int:
    """Established connections to `port` that process `pid` holds (from ss)."""
    args = ["ss", "-Htnp", "state", "established", f"( sport = :{port} )"]
    out = subprocess.run(args, capture_output=True, text=True)
    return sum(1 for row in out.stdout.splitlines() if f"pid={pid}," in row)


def one_run(server: RedisServer, workers: int, scenario: str, seconds: float, tmp: Path) -> dict[str, Any]:
    clients, streams, rate, regex = SCENARIOS[scenario]
    prefix, port = f"w{time.monotonic_ns()}:", free_port()
    env = {"TAILGATE_REDIS_URL": server.url, "TAILGATE_REDIS_PREFIX": prefix, "TAILGATE_GATEWAY_PORT": str(port)}
    env["TAILGATE_SALT_MODE"] = "off"
    log = open(tmp / f"gateway-{workers}-{port}.log", "ab")  # noqa: SIM115
    args = [PY, "-m", "gateway", "--log-level", "WARNING", "--workers", str(workers)]
    gw = spawn(args, env, stdout=log, stderr=log)
    r = redis.Redis.from_url(server.url)
    try:
        wait_until(lambda: gateway_ready(port), 30, what="gateway ready")
        gateway = [psutil.Process(gw.pid), *psutil.Process(gw.pid).children()]
        cmd = [PY, "-m", "bench.wsload", "--url", f"ws://127.0.0.1:{port}/ws", "--clients", str(clients)]
        cmd += ["--streams", ",".join(streams), "--seconds", str(seconds), "--warmup", str(WARMUP), "--regex", regex]
        load = spawn(cmd, stdout=subprocess.PIPE, text=True)
        ready = json.loads(load.stdout.readline())
        assert ready["event"] == "ready", ready
        pub = [PY, "-m", "bench.publisher", "--redis", server.url, "--prefix", prefix, "--streams", ",".join(streams)]
        pub += ["--rate", str(rate), "--seconds", str(WARMUP + seconds + SETTLE)]
        publisher = spawn(pub, stdout=subprocess.DEVNULL)
        time.sleep(WARMUP)
        spread = sorted(connections_of(w.pid, port) for w in gateway[1:])  # before the load generator lets go
        redis_proc = psutil.Process(server.proc.pid)
        each0, redis0, t0 = [cpu([p]) for p in gateway], cpu([redis_proc]), time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - t0
        each = [(cpu([p]) - c0) / wall for p, c0 in zip(gateway, each0, strict=True)]
        gw_cpu, redis_cpu = sum(each), (cpu([redis_proc]) - redis0) / wall
        pubsub = sum(1 for c in r.client_list() if c.get("name") == "tailgate-gateway-pubsub")
        rss = [round(p.memory_info().rss / 2**20, 1) for p in gateway]  # the supervisor first, if any
        result = json.loads(load.stdout.readline())
        load.wait(30)
        stop(publisher)
    finally:
        stop(gw)
    delivered = result["lines_per_s"]
    return {
        "scenario": scenario,
        "workers": workers,
        "delivered_lines_per_s": delivered,
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "dropped": result["dropped"],
        "gaps": result["gaps"],
        "errors": result["errors"],
        "closed_by_server": result["closed_by_server"],
        "gateway_cpu": round(gw_cpu, 2),
        "gateway_cpu_us_per_line": round(gw_cpu / delivered * 1e6, 2) if delivered else None,
        "redis_cpu": round(redis_cpu, 2),
        "loadgen_cpu": result["loadgen_cpu"],
        "worker_cpu": [round(c, 2) for c in each[1:]] or [round(each[0], 2)],
        "rss_mib": rss,
        "connections_per_worker": spread or [clients],
        "pubsub_connections": pubsub,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tailgate-bench-workers-"))
    server = RedisServer(workdir=str(tmp)).start()
    meta = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.processor() or platform.platform()}",
        "python": platform.python_version(),
        "at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_before": os.getloadavg(),
    }
    print(json.dumps(meta), flush=True)
    results = []
    try:
        for scenario in args.only or sorted(SCENARIOS):
            for _ in range(args.rounds):
                for workers in (1, 2):
                    results.append(one_run(server, workers, scenario, args.seconds, tmp))
                    print(json.dumps(results[-1]), flush=True)
    finally:
        server.stop()
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "workers.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"written {out / 'workers.json'}")


if __name__ == "__main__":
    main()
