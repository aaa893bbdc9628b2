"""One Redis node against a three-shard Redis Cluster, in the same run (issue 14).

    .venv/bin/python -m bench.cluster_bench                  # both scenarios, both setups, two rounds: ~3 minutes
    .venv/bin/python -m bench.cluster_bench --only many --rounds 1 --replicas 1

Setups: one redis-server, and a Redis Cluster of three primaries (`embedded.RedisClusterNodes`,
`redis-cli --cluster create`), with no replicas unless `--replicas 1` (a replica adds
replication work on the same two cores; the one node has none either). Scenarios (those of
bench/workers_bench.py): fan-out, one stream at 1,000 lines/s to 500 viewers; many
streams, 200 streams x 5 viewers at 20,000 lines/s. Runs alternate between the setups,
each with a fresh gateway. Pinned as in bench/gateway_bench.py: the gateway, every
redis-server and the publisher on core 0, the load generator (bench/wsload.py) alone on
core 1. The publisher (bench/publisher.py) publishes through `wire.Publisher` with the
client and key layout `wire.connect` builds from the mode, as the bridge and the tail
agent do: on the cluster, one script call per slot in a pipeline split by primary.

Measured over 10 s after 3 s of warm-up, at the load generator: delivered lines/s, p50 and
p99 latency, `dropped` and `gap`; from /proc (psutil): the gateway's CPU and each
redis-server's and the publisher's; on each node, before and after: lines published there
(the catalogue's `counts` of the streams it owns), publish script calls and their time
(`INFO commandstats`, EVAL and EVALSHA), the memory of those streams' histories (`MEMORY
USAGE`, after), and every 0.5 s its `CLIENT LIST`: the gateway's pub/sub connections
(`tailgate-gateway-pubsub`) and all of its connections. Prints JSON lines, then Markdown
tables; bench/results/cluster.json keeps everything. docs/BENCHMARKS.md says what limits
each figure on a two-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

from bench.gateway_bench import GATEWAY_CORE, PY, pinned, spawn, start_gateway, stop, write_results, wsload
from bench.workers_bench import SCENARIOS, cpu
from embedded import RedisServer, free_port
from embedded.cluster import RedisClusterNodes
from wire import Keys
from wire.slots import SLOTS

WARMUP, SETTLE = 3.0, 3.0
RUN_SCENARIOS = ("fanout", "many")
PUBSUB_NAME, GATEWAY_NAMES = "tailgate-gateway-pubsub", "tailgate-gateway"
SCRIPT_CALLS = ("eval", "evalsha")  # the publish step: EVALSHA on one node, EVAL in a cluster pipeline
SlotRange = tuple[int, int, int]  # first slot, last slot, port of the primary owning them


@dataclass
class Setup:
    """One Redis deployment under test: its nodes and how components are pointed at it."""

    name: str
    nodes: list[RedisServer]  # every redis-server, primaries first
    slots: list[SlotRange]
    settings: dict[str, str]  # the gateway's Redis settings (environment)
    publisher_args: list[str]
    cluster: bool
    roles: dict[int, str]  # port -> primary, replica or "one node"

    @property
    def url(self) -> str:
        return self.settings["TAILGATE_REDIS_URL"]


def owner(slot: int, slots: list[SlotRange]) -> int:
    """The port of the node owning `slot`."""
    for first, last, port in slots:
        if first <= slot <= last:
            return port
    raise LookupError(f"slot {slot} is not served")


def streams_by_node(streams: Iterable[str], keys: Keys, slots: list[SlotRange]) -> dict[int, list[str]]:
    """The streams each node holds (every node of `slots` appears, with none if so)."""
    out: dict[int, list[str]] = {port: [] for _, _, port in slots}
    for stream in streams:
        out[owner(keys.slot(stream), slots)].append(stream)
    return out


def shares(values: dict[int, float]) -> dict[int, float]:
    """Each node's part of the total, 0..1 (0 each when the total is 0)."""
    total = sum(values.values())
    return {port: (v / total if total else 0.0) for port, v in values.items()}


def command_total(commandstats: dict[str, dict[str, int]], what: str, commands: Iterable[str]) -> int:
    """`what` (calls, usec) summed over `commands` in an `INFO commandstats` reply (a command
    never run is absent: 0)."""
    return sum(commandstats.get(f"cmdstat_{c}", {}).get(what, 0) for c in commands)


def slot_map(port: int) -> list[SlotRange]:
    with redis.Redis(port=port) as r:
        return sorted((int(a), int(b), int(primary[1])) for a, b, primary, *_ in r.execute_command("CLUSTER", "SLOTS"))


def one_node(tmp: Path) -> Setup:
    (tmp / "single").mkdir()
    server = RedisServer(workdir=str(tmp / "single")).start()
    return Setup(
        "one node",
        [server],
        [(0, SLOTS - 1, server.port)],
        {"TAILGATE_REDIS_URL": server.url},
        ["--redis", server.url],
        cluster=False,
        roles={server.port: "one node"},
    )


def three_shards(tmp: Path, replicas: int) -> tuple[Setup, RedisClusterNodes]:
    nodes = RedisClusterNodes(workdir=str(tmp / "cluster"), replicas=replicas).start()
    seeds = ",".join(nodes.seeds)
    primaries = nodes.primaries()
    setup = Setup(
        f"cluster, 3 primaries{f' + {3 * replicas} replicas' if replicas else ''}",
        sorted(nodes.nodes, key=lambda n: n.port not in primaries),
        slot_map(primaries[0]),
        # in cluster mode the URL gives only credentials and TLS (none here)
        {
            "TAILGATE_REDIS_URL": "redis://127.0.0.1/0",
            "TAILGATE_REDIS_MODE": "cluster",
            "TAILGATE_REDIS_CLUSTER_NODES": seeds,
        },
        ["--cluster-nodes", seeds],
        cluster=True,
        roles={n.port: "primary" if n.port in primaries else "replica" for n in nodes.nodes},
    )
    return setup, nodes


@dataclass
class NodeSample:
    cpu_s: float
    lines: int
    history_bytes: int
    script_calls: int
    script_us: int
    publishes: int


def sample(setup: Setup, keys: Keys, owned: dict[int, list[str]]) -> dict[int, NodeSample]:
    """Each node's CPU (from /proc), lines published to the streams it owns and the memory
    their histories take (MEMORY USAGE), and its publish commands."""
    out = {}
    for node in setup.nodes:
        with redis.Redis(port=node.port) as r:
            stats = r.info("commandstats")
            mine = owned.get(node.port, [])
            pipe = r.pipeline(transaction=False)
            for stream in mine:
                pipe.hget(keys.counts_in(keys.slot(stream)) if keys.cluster else keys.counts, stream)
                pipe.memory_usage(keys.hist(stream), samples=0)
            replies = [int(v or 0) for v in pipe.execute()] if mine else []
        out[node.port] = NodeSample(
            cpu([psutil.Process(node.proc.pid)]),
            sum(replies[0::2]),
            sum(replies[1::2]),
            command_total(stats, "calls", SCRIPT_CALLS),
            command_total(stats, "usec", SCRIPT_CALLS),
            command_total(stats, "calls", ("publish", "spublish")),
        )
    return out


def gateway_connections(setup: Setup) -> dict[int, tuple[int, int]]:
    """Per node: the gateway's pub/sub connections, and all of its connections."""
    out = {}
    for node in setup.nodes:
        with redis.Redis(port=node.port) as r:
            names = [c.get("name", "") for c in r.client_list()]
        out[node.port] = (names.count(PUBSUB_NAME), sum(n.startswith(GATEWAY_NAMES) for n in names))
    return out


def one_run(setup: Setup, scenario: str, seconds: float, tick: float, tmp: Path) -> dict[str, Any]:
    clients, streams, rate, _ = SCENARIOS[scenario]
    prefix, port = f"c{time.monotonic_ns()}:", free_port()
    keys = Keys(prefix, cluster=setup.cluster)
    owned = streams_by_node(streams, keys, setup.slots)
    env = {**setup.settings, "TAILGATE_SALT_MODE": "off"}
    gw = start_gateway("tailgate", setup.url, prefix, port, tmp / f"gateway-{port}.log", env=env)
    procs = [gw]
    try:
        load = wsload(port, clients, ",".join(streams), "--seconds", str(seconds), "--warmup", str(WARMUP))
        procs.append(load)
        ready = json.loads(load.stdout.readline())
        assert ready["event"] == "ready", ready
        pub = [PY, "-m", "bench.publisher", *setup.publisher_args, "--prefix", prefix, "--streams", ",".join(streams)]
        pub += ["--rate", str(rate), "--seconds", str(WARMUP + seconds + SETTLE), "--tick", str(tick)]
        publisher = spawn(pinned(GATEWAY_CORE, pub), stdout=subprocess.DEVNULL)
        procs.append(publisher)
        gproc, pproc = psutil.Process(gw.pid), psutil.Process(publisher.pid)
        time.sleep(WARMUP)
        before, gw0, pub0, t0 = sample(setup, keys, owned), cpu([gproc]), cpu([pproc]), time.monotonic()
        conns: dict[int, tuple[int, int]] = {}
        while time.monotonic() - t0 < seconds:
            for node, seen in gateway_connections(setup).items():
                conns[node] = max(conns.get(node, (0, 0)), seen)
            time.sleep(0.5)
        after, gw_cpu, pub_cpu, wall = sample(setup, keys, owned), cpu([gproc]), cpu([pproc]), time.monotonic() - t0
        result = json.loads(load.stdout.readline())
        load.wait(30)
    finally:
        for proc in reversed(procs):
            stop(proc)
    lines = {p: after[p].lines - before[p].lines for p in after}
    published = sum(lines.values()) / wall
    expected = published * clients / len(streams)  # every client watches one stream, evenly spread
    part = shares({p: float(v) for p, v in lines.items()})
    nodes = [
        {
            "port": p,
            "role": setup.roles[p],
            "streams": len(owned.get(p, [])),
            "lines_per_s": round(lines[p] / wall),
            "share": round(part[p], 3),
            "publish_calls_per_s": round((after[p].script_calls - before[p].script_calls) / wall),
            "publish_script_time": round((after[p].script_us - before[p].script_us) / 1e6 / wall, 3),
            "pubsub_publishes_per_s": round((after[p].publishes - before[p].publishes) / wall),
            "redis_cpu": round((after[p].cpu_s - before[p].cpu_s) / wall, 3),
            "history_mib": round(after[p].history_bytes / 2**20, 1),
            "gateway_pubsub_connections": conns.get(p, (0, 0))[0],
            "gateway_connections": conns.get(p, (0, 0))[1],
        }
        for p in after
    ]
    return {
        "scenario": scenario,
        "setup": setup.name,
        "clients": clients,
        "streams": len(streams),
        "published_lines_per_s": round(published),
        "expected_lines_per_s": round(expected),
        "delivered_lines_per_s": result["lines_per_s"],
        "delivered_ratio": round(result["lines_per_s"] / expected, 4) if expected else None,
        "dropped": result["dropped"],
        "gaps": result["gaps"],
        "errors": result["errors"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "max_ms": result["max_ms"],
        "gateway_cpu": round((gw_cpu - gw0) / wall, 3),
        "publisher_cpu": round((pub_cpu - pub0) / wall, 3),
        "tick_ms": tick,
        "loadgen_cpu": result["loadgen_cpu"],
        "redis_cpu_total": round(sum(n["redis_cpu"] for n in nodes), 3),
        "nodes": nodes,
    }


def per_line(cores: float, lines_per_s: float) -> str:
    """CPU per published line, in microseconds: what holds across runs on a busy machine."""
    return f"{cores / lines_per_s * 1e6:.1f} us" if lines_per_s else "-"


def markdown(results: list[dict[str, Any]]) -> str:
    """The results as two Markdown tables: one row per run, then one per node and run."""
    out = [
        "| scenario | setup | published lines/s | publisher CPU (per line) | delivered lines/s (of expected) "
        "| dropped / gaps / errors | p50 / p99 | gateway CPU | Redis CPU per node (total; per line) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        per_node = " + ".join(f"{n['redis_cpu']:.2f}" for n in r["nodes"])
        published = r["published_lines_per_s"]
        total = f"{r['redis_cpu_total']:.2f}; " if len(r["nodes"]) > 1 else ""
        redis_cpu = f"{per_node} ({total}{per_line(r['redis_cpu_total'], published)})"
        publisher = f"{r['publisher_cpu']:.2f} ({per_line(r['publisher_cpu'], published)})"
        out.append(
            f"| {r['scenario']} | {r['setup']} | {published:,} | {publisher} "
            f"| {r['delivered_lines_per_s']:,} ({100 * (r['delivered_ratio'] or 0):.1f}%) "
            f"| {r['dropped']} / {r['gaps']} / {r['errors']} | {r['p50_ms']} / {r['p99_ms']} ms "
            f"| {r['gateway_cpu']:.2f} | {redis_cpu} |"
        )
    out += [
        "",
        "| scenario | setup | node | streams | lines/s published (share) | publish calls/s | publish script time "
        "| Redis CPU | history held | gateway pub/sub connections | all gateway connections |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        for n in r["nodes"]:
            out.append(
                f"| {r['scenario']} | {r['setup']} | {n['role']} :{n['port']} | {n['streams']} "
                f"| {n['lines_per_s']:,} ({100 * n['share']:.0f}%) | {n['publish_calls_per_s']:,} "
                f"| {n['publish_script_time']:.3f} | {n['redis_cpu']:.3f} | {n['history_mib']} MiB "
                f"| {n['gateway_pubsub_connections']} "
                f"| {n['gateway_connections']} |"
            )
    return "\n".join(out)


def machine() -> str:
    """The cores, their model (lscpu) and the Redis version."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lscpu if line.startswith("Model name")), "?")
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    return f"{os.cpu_count()} cores ({model}), Redis {version.removeprefix('v=')}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=RUN_SCENARIOS, action="append")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--tick", type=float, default=50.0, help="milliseconds between the publisher's calls")
    parser.add_argument("--replicas", type=int, choices=[0, 1], default=0, help="replicas per cluster primary")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tailgate-bench-cluster-"))
    load_before = os.getloadavg()
    print(json.dumps({"machine": machine(), "load_average_before": load_before}), flush=True)
    single = one_node(tmp)
    cluster = None
    results = []
    try:
        shards, cluster = three_shards(tmp, args.replicas)
        for node in [*single.nodes, *shards.nodes]:
            subprocess.run(["taskset", "-pc", GATEWAY_CORE, str(node.proc.pid)], check=True, stdout=subprocess.DEVNULL)
        for scenario in args.only or RUN_SCENARIOS:
            for _ in range(args.rounds):
                for setup in (single, shards):
                    results.append(one_run(setup, scenario, args.seconds, args.tick, tmp))
                    print(json.dumps(results[-1]), flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
        for node in single.nodes:
            node.stop()
    write_results("cluster.json", results, cpu=machine(), load_average_before=load_before, replicas=args.replicas)
    print(f"\nload average before {load_before}, after {os.getloadavg()}\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
