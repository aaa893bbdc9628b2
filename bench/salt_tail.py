"""Salt tail benchmark (issue 5): how long from subscribing to a file stream to its first line.

    .venv/bin/python -m bench.salt_tail            # 10 runs of each scenario, about a minute
    .venv/bin/python -m bench.salt_tail --runs 20

Starts its own redis-server, a salt-master and salt-minion on loopback with the logtail
formula applied (as the tests do), and one gateway in `salt.mode: local`. Scenarios, in
the same run:

* cold start: nobody tails the file; subscribe, and time the first line (the agent is
  started through Salt and sends the file's last lines) and a line appended right
  after subscribing;
* baseline, agent already running: the same, for a file another viewer already tails,
  so no Salt job is involved: what the pipeline alone costs;
* baseline, Salt round trip: `logtail.status` through LocalClient, the floor of any job.

Results go to stdout (a Markdown table) and bench/results/salt_tail.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

from embedded import RedisServer, free_port, gateway_ready, wait_until
from embedded.salt import SaltPair, logtail_pillar

ROOT = Path(__file__).resolve().parent.parent
MINION = "bench-minion"


async def first_lines(url: str, stream: str, path: Path, hold: bool = False) -> tuple[float, float, Any]:
    """Subscribe, append a line at once; (s to the first line, s to the appended line)."""
    ws = await websockets.connect(url, max_size=None)
    started = time.monotonic()
    await ws.send(json.dumps({"op": "subscribe", "stream": stream}))
    marker = f"appended {time.time_ns()}"
    with path.open("a") as fh:
        fh.write(marker + "\n")
    first = appended = None
    async with asyncio.timeout(20):
        while appended is None:
            msg = json.loads(await ws.recv())
            if msg.get("type") == "lines":
                first = first or time.monotonic() - started
                if any(line["text"] == marker for line in msg["lines"]):
                    appended = time.monotonic() - started
            elif msg.get("type") == "error" or msg.get("state") == "failed":
                raise RuntimeError(f"{stream}: {msg}")
    if not hold:
        await ws.close()
        ws = None
    assert first is not None
    return first, appended, ws


def agent_running(run_dir: Path, path: Path) -> bool:
    import fcntl
    import hashlib

    lock = run_dir / (hashlib.sha256(str(path).encode()).hexdigest()[:32] + ".lock")
    if not lock.exists():
        return False
    with lock.open("rb") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


def summary(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "median_ms": round(statistics.median(values) * 1000, 1),
        "p90_ms": round(values[min(len(values) - 1, int(len(values) * 0.9))] * 1000, 1),
        "max_ms": round(values[-1] * 1000, 1),
    }


async def scenarios(port: int, logs: Path, run_dir: Path, runs: int) -> dict[str, list[float]]:
    url = f"ws://127.0.0.1:{port}/ws"
    out: dict[str, list[float]] = {"cold_first": [], "cold_appended": [], "warm_first": [], "warm_appended": []}
    for i in range(runs):
        path = logs / f"cold-{i}.log"
        path.write_text("".join(f"existing line {n}\n" for n in range(100)))
        first, appended, _ = await first_lines(url, f"file:{MINION}:{path}", path)
        out["cold_first"].append(first)
        out["cold_appended"].append(appended)
    warm = logs / "warm.log"
    warm.write_text("".join(f"existing line {n}\n" for n in range(100)))
    *_, holder = await first_lines(url, f"file:{MINION}:{warm}", warm, hold=True)
    for _ in range(runs):
        first, appended, _ = await first_lines(url, f"file:{MINION}:{warm}", warm)
        out["warm_first"].append(first)
        out["warm_appended"].append(appended)
    await holder.close()
    return out


def salt_round_trips(pair: SaltPair, runs: int) -> list[float]:
    import salt.client

    client = salt.client.LocalClient(c_path=pair.master_config)
    times = []
    for _ in range(runs):
        started = time.monotonic()
        ret = client.cmd([MINION], "logtail.status", tgt_type="list", timeout=10)
        assert ret.get(MINION, {}).get("ok"), ret
        times.append(time.monotonic() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tailgate-bench-salt-"))
    logs = work / "logs"
    logs.mkdir()
    redis_server = RedisServer(workdir=str(work)).start()
    prefix = "bench:"
    pillar = logtail_pillar(redis_server.url, prefix, work / "minion", [f"{logs}/**"], grace_period=2)
    pair = SaltPair(pillar, minion_id=MINION, workdir=str(work / "salt"))
    gateway: subprocess.Popen[bytes] | None = None
    try:
        started = time.monotonic()
        pair.start()
        pair.apply()
        salt_up = time.monotonic() - started
        port = free_port()
        env = dict(
            os.environ,
            PYTHONPATH=str(ROOT),
            TAILGATE_REDIS_URL=redis_server.url,
            TAILGATE_REDIS_PREFIX=prefix,
            TAILGATE_GATEWAY_PORT=str(port),
            TAILGATE_SALT_MODE="local",
            TAILGATE_SALT_MASTER_CONFIG=pair.master_config,
            TAILGATE_SALT_WANTED_TTL="3",
            TAILGATE_GATEWAY_FILE_ALLOWLIST=f"{logs}/**",
        )
        with (work / "gateway.log").open("ab") as out:
            gateway = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--log-level", "WARNING"], cwd=ROOT, env=env, stdout=out, stderr=out
            )
        wait_until(lambda: gateway_ready(port), 30, what="gateway ready")
        results = asyncio.run(scenarios(port, logs, work / "minion" / "run", args.runs))
        results["salt_round_trip"] = salt_round_trips(pair, args.runs)
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.wait(15)
        pair.stop()
        redis_server.stop()
    report = {name: summary(values) for name, values in results.items()}
    report["_meta"] = {
        "runs": args.runs,
        "salt_master_minion_up_and_formula_applied_s": round(salt_up, 1),
        "nproc": os.cpu_count(),
        "machine": platform.platform(),
    }
    labels = {
        "cold_first": "cold start: subscribe -> first line (agent started via Salt)",
        "cold_appended": "cold start: subscribe -> line appended at subscribe",
        "warm_first": "baseline, agent running: subscribe -> first live line",
        "warm_appended": "baseline, agent running: subscribe -> line appended at subscribe",
        "salt_round_trip": "baseline, Salt round trip (logtail.status, LocalClient)",
    }
    print(f"\n| scenario ({args.runs} runs) | median | p90 | max |\n| --- | --- | --- | --- |")
    for key, label in labels.items():
        r = report[key]
        print(f"| {label} | {r['median_ms']} ms | {r['p90_ms']} ms | {r['max_ms']} ms |")
    print(f"\nsalt-master + salt-minion up and formula applied in {salt_up:.1f}s")
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "salt_tail.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
