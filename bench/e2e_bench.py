"""End to end (issue 17): Kafka produce -> WebSocket receive, through the real bridge and gateway.

    .venv/bin/python -m bench.e2e_bench [--clients 500] [--rate 1000] [--seconds 20] [--warmup 5]
                                        [--linger-ms 5,0] [--client kafka-python|confluent-kafka]
                                        [--producer confluent-kafka|kafka-python] [--cores broker=0,...]
                                        [--no-baseline]

Starts its own redis-server and embedded Kafka broker (Tansu, memory storage), then for
each producer `linger_ms` a fresh 4-partition topic, a real bridge (`python -m bridge
--static`, `bridge.client` from `--client`), one real gateway (`python -m gateway`) and
the load client (bench/wsload.py: `--clients` viewers of the topic's stream). A producer
process sends `--rate` lines a second, one line per Kafka message, paced line by line;
each line is 100 bytes of text starting with its send time (`@t=<microseconds>`, taken
just before it is produced, so the producer's own batching counts).

Measured over the same window (`--seconds`, after `--warmup`), at three points:
  produce -> receive   the load client, from the send time in each frame's oldest line
                       (every line of a frame is at most that late)
  produce -> PUBLISH   a subscriber on the stream's live channel in Redis (this process),
                       every line, as bench/bridge_bench.py measures the bridge
  PUBLISH -> receive   the load client, from the XADD time in the oldest line's id, as in
                       bench/gateway_bench.py
and, for the frames at or above the produce -> receive p99, the median of the part before
XADD and the part after it: where the tail goes. Loss: lines produced x viewers minus the
lines the viewers received by the end (the load client waits until 3 s pass without one).
CPU: each process's user+system time over the window (all its threads), and each core's
busy share. Then, unless `--no-baseline`, the gateway alone at the same moment, fed
without Kafka: bench.gateway_bench's fan-out with the same viewers and rate.

Pinning, on 2 cores: the gateway on core 0 and the load client on core 1, always (as in
bench/gateway_bench.py); the others where `--cores` says. The test broker is the
costliest process of the run (Tansu: about 0.5 core at 1,000 messages a second) and the
load client the next (0.4-0.65 core for 500 viewers), so they go on different cores:
by default the broker beside the gateway on core 0, and the bridge, Redis and the
producer beside the load client on core 1 (this process, the measuring subscriber at
about 0.01 core, goes with Redis): about 0.7-0.8 core of the benchmark's own work on
core 0 and 0.8-0.95 on core 1. With the broker beside the load client instead, core 1
held more than a whole core of work and the load client's stalls were part of the tail. Each run
reports every process's CPU, each core's busy share, the gateway's own publish -> socket
histogram and the load client's event-loop lag beside the latencies, so a core that
filled up shows. On a machine with one core nothing is pinned.
The producer is librdkafka's (`--producer confluent-kafka`, 0.05 core at 1,000 lines/s)
unless `--producer kafka-python` (0.2-0.3 core). Results: bench/results/e2e.json, and a
Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import tempfile
import threading
import time
import urllib.request
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
import redis
from confluent_kafka import Producer as RdProducer
from kafka import KafkaProducer

from bench.bridge_bench import CLIENTS as BRIDGE_CLIENTS
from bench.bridge_bench import PARTITIONS, BridgeProc, create, pin
from bench.gateway_bench import GATEWAY_CORE, LOAD_CORE, load_run, start_gateway, stop, write_results, wsload
from bench.peers.publish import line_text
from bench.peers.run import core_busy, machine
from embedded import KafkaBroker, RedisServer, free_port
from wire import Keys

MARK = "@t="
P99_GOAL_MS = 100.0
DRAIN_S = 3.0
CORES = {"bridge": LOAD_CORE, "redis": LOAD_CORE, "broker": GATEWAY_CORE, "producer": LOAD_CORE}


def cores(spec: str) -> dict[str, str]:
    """`--cores`: role=core pairs over the defaults (CORES)."""
    chosen = dict(CORES)
    for pair in filter(None, spec.split(",")):
        role, _, core = pair.partition("=")
        if role not in CORES or core not in (GATEWAY_CORE, LOAD_CORE):
            raise argparse.ArgumentTypeError(f"{pair!r}: expected one of {', '.join(CORES)} = 0 or 1")
        chosen[role] = core
    return chosen


def produce(args: argparse.Namespace, bootstrap: str, topic: str, total: int, linger_ms: int, out: Connection) -> None:
    """Send `total` lines at `args.rate` a second, each paced on its own, with the
    `args.producer` client; report how many and how late the latest one was against its
    schedule."""
    pin(int(args.cores["producer"]))
    if args.producer == "kafka-python":
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms)

        def send(value: bytes, partition: int) -> None:
            producer.send(topic, value, partition=partition)

        def close() -> None:
            producer.flush()
            producer.close()
    else:
        rd = RdProducer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms})

        def send(value: bytes, partition: int) -> None:
            rd.produce(topic, value, partition=partition)
            rd.poll(0)  # serve delivery reports, or librdkafka's queue of them grows

        def close() -> None:
            rd.flush(10)

    started = time.perf_counter()
    late = 0.0
    for i in range(total):
        wait = started + i / args.rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        else:
            late = max(late, -wait)
        send(line_text(int(time.time() * 1e6), i).encode(), i % PARTITIONS)
    close()
    out.send({"produced": total, "max_late_ms": round(late * 1000, 1)})


class PublishWatch:
    """produce -> PUBLISH: a subscriber on the stream's live channel, on a thread of this
    process, taking every line's send time from its text while `measuring` is set."""

    def __init__(self, r: redis.Redis, channel: str) -> None:
        self.pubsub = r.pubsub()
        self.pubsub.subscribe(channel)
        self.measuring = threading.Event()
        self.done = threading.Event()
        self.latencies: list[float] = []
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        while not self.done.is_set():
            msg = self.pubsub.get_message(timeout=0.2)
            if msg is None or msg["type"] != "message" or not self.measuring.is_set():
                continue
            now_ms = time.time() * 1000
            _, _, array = msg["data"].partition(b"\n")
            for obj in json.loads(array):
                sent_us = int(obj["text"][len(MARK) :].split(" ", 1)[0])
                self.latencies.append(now_ms - sent_us / 1000)

    def close(self) -> dict[str, Any]:
        self.done.set()
        self.thread.join(2)
        self.pubsub.close()
        lat = sorted(self.latencies)
        if not lat:
            return {}
        return {
            "lines": len(lat),
            "p50_ms": round(lat[len(lat) // 2], 1),
            "p99_ms": round(lat[int(len(lat) * 0.99)], 1),
            "max_ms": round(lat[-1], 1),
        }


def send_lags(port: int) -> dict[float, int]:
    """The gateway's publish -> hand-off to a socket histogram (its /metrics): cumulative
    count of hand-offs per upper bound in seconds. Each is timed from the XADD of the
    batch's NEWEST line (gateway/fanout/lag.py), so it is the gateway's part of
    PUBLISH -> receive, less the batch's own span."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.findall(r'^tailgate_gateway_publish_to_send_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M)
    return {float(le): int(float(n)) for le, n in found}


def lag_summary(before: dict[float, int], after: dict[float, int]) -> dict[str, Any]:
    """Over the window: hand-offs, and the smallest bound at or under which 50% and 99% of them were."""
    counts = {le: after[le] - before.get(le, 0) for le in sorted(after)}
    total = counts[float("inf")]

    def bound(p: float) -> float | None:
        return next((le * 1000 for le, n in counts.items() if n >= p * total), None) if total else None

    return {"handoffs": total, "p50_at_most_ms": bound(0.5), "p99_at_most_ms": bound(0.99)}


def cpu_seconds(proc: psutil.Process) -> float:
    """User+system CPU time of this one process, all its threads (not its children: the
    benchmark process started every other)."""
    return sum(proc.cpu_times()[:2])


def one_run(
    args: argparse.Namespace, linger_ms: int, server: RedisServer, broker: KafkaBroker, work: Path
) -> dict[str, Any]:
    """One measured run with a fresh topic, bridge, gateway and viewers."""
    uid = uuid.uuid4().hex[:6]
    topic, prefix, port = f"e2e{linger_ms}-{uid}", f"e{uid}:", free_port()
    stream = f"kafka:{topic}"
    create(broker.bootstrap, topic)
    r = redis.Redis.from_url(server.url)
    log = work / f"bridge-{uid}.log"
    bridge = BridgeProc(args.client, server.url, broker.bootstrap, prefix, topic, log, int(args.cores["bridge"]))
    gateway = load = feeder = None
    watch = PublishWatch(r, Keys(prefix).live(stream))
    try:
        bridge.assigned()
        gateway = start_gateway("tailgate", server.url, prefix, port, work / f"gateway-{uid}.log")
        load_args = ["--seconds", str(args.seconds), "--warmup", str(args.warmup), "--mark", MARK]
        load = wsload(port, args.clients, stream, *load_args, "--drain", str(DRAIN_S))
        ready = json.loads(load.stdout.readline())
        assert ready["event"] == "ready" and ready["connected"] == args.clients, ready
        total = int(args.rate * (args.warmup + args.seconds + 1))
        report_in, report_out = multiprocessing.get_context("fork").Pipe(duplex=False)
        feed_args = (args, broker.bootstrap, topic, total, linger_ms, report_out)
        feeder = multiprocessing.get_context("fork").Process(target=produce, args=feed_args)
        feeder.start()
        procs = {
            "gateway": gateway.pid,
            "bridge": bridge.proc.pid,
            "redis": server.proc.pid,
            "broker": broker.proc.pid,
            "producer": feeder.pid,
            "load client": load.pid,
            "bench (measuring)": os.getpid(),
        }
        watched = {name: psutil.Process(pid) for name, pid in procs.items()}
        time.sleep(args.warmup)
        cpu0 = {name: cpu_seconds(p) for name, p in watched.items()}
        lags0 = send_lags(port)
        cores0, t0 = psutil.cpu_times(percpu=True), time.monotonic()
        watch.measuring.set()
        time.sleep(args.seconds)
        watch.measuring.clear()
        wall = time.monotonic() - t0
        cpu = {name: round((cpu_seconds(p) - cpu0[name]) / wall, 3) for name, p in watched.items()}
        busy = core_busy(cores0, psutil.cpu_times(percpu=True))
        gateway_lag = lag_summary(lags0, send_lags(port))
        produced = report_in.recv()
        feeder.join(10)
        result = json.loads(load.stdout.readline())
        load.wait(30)
    finally:
        publish = watch.close()
        r.close()
        for proc in (load, gateway):
            if proc is not None:
                stop(proc)
        if feeder is not None and feeder.is_alive():
            feeder.terminate()
        bridge.stop()
    sent = result.get("sent", {})
    return {
        "linger_ms": linger_ms,
        "client": args.client,
        "clients": args.clients,
        "rate": args.rate,
        "seconds": args.seconds,
        "delivered_per_s": result["lines_per_s"],
        "frames_per_s": result["frames_per_s"],
        "loss": produced["produced"] * args.clients - result["total_lines"],
        "dropped": result["dropped"],
        "gaps": result["gaps"],
        "produce_to_receive": sent,
        "produce_to_publish": publish,
        "publish_to_receive": {k: result[k] for k in ("p50_ms", "p99_ms", "max_ms")},
        "gateway_publish_to_send": gateway_lag,
        "cpu": cpu,
        "core_busy": busy,
        "producer_max_late_ms": produced["max_late_ms"],
        "load_client_lag_ms": {"p99": result["loadgen_lag_p99_ms"], "max": result["loadgen_lag_max_ms"]},
    }


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| producer | delivered lines/s | loss | produce -> receive p50 / p99 / max | produce -> PUBLISH p50 / p99 "
        "| PUBLISH -> receive p50 / p99 | gateway publish -> socket p99 at most | frames at the p99: before / after "
        "XADD (median) | load client lag p99 / max | CPU: gateway, bridge, Redis, broker, load client, producer "
        "| cores busy (0, 1) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    who = ("gateway", "bridge", "redis", "broker", "load client", "producer")
    for res in results:
        e2e, pub, gw, cpu = res["produce_to_receive"], res["produce_to_publish"], res["publish_to_receive"], res["cpu"]
        lag = res["load_client_lag_ms"]
        rows.append(
            f"| linger_ms={res['linger_ms']}, {res['client']} | {res['delivered_per_s']:,} | {res['loss']:,} "
            f"| {e2e['p50_ms']} / **{e2e['p99_ms']}** / {e2e['max_ms']} ms | {pub['p50_ms']} / {pub['p99_ms']} ms "
            f"| {gw['p50_ms']} / {gw['p99_ms']} ms | {res['gateway_publish_to_send']['p99_at_most_ms']} ms "
            f"| {e2e['tail_to_xadd_median_ms']} / {e2e['tail_xadd_to_receive_median_ms']} ms "
            f"| {lag['p99']} / {lag['max']} ms | {', '.join(str(cpu[w]) for w in who)} "
            f"| {', '.join(str(b) for b in res['core_busy'])} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--linger-ms", type=lambda v: [int(x) for x in v.split(",")], default=[5, 0])
    parser.add_argument("--client", choices=BRIDGE_CLIENTS, default=BRIDGE_CLIENTS[0], help="bridge.client")
    parser.add_argument(
        "--producer", choices=BRIDGE_CLIENTS, default="confluent-kafka", help="the Kafka client the producer uses"
    )
    parser.add_argument(
        "--cores",
        type=cores,
        default=cores(""),
        help=f"where the others run, e.g. broker=0,bridge=1 (default {','.join(f'{k}={v}' for k, v in CORES.items())})",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the gateway alone, fed without Kafka")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="e2e-bench-"))
    load_start = os.getloadavg()
    server = RedisServer(workdir=str(work)).start()
    broker = KafkaBroker(log_path=str(work / "tansu.log")).start()
    assert server.proc is not None and broker.proc is not None
    for pid in (server.proc.pid, os.getpid()):
        pin(int(args.cores["redis"]), pid)
    pin(int(args.cores["broker"]), broker.proc.pid)
    layout = {"gateway": GATEWAY_CORE, "load client": LOAD_CORE, **args.cores}
    print("cores: " + ", ".join(f"{name} {core}" for name, core in layout.items()), flush=True)
    results = []
    baseline: dict[str, Any] = {}
    try:
        for linger in args.linger_ms:
            results.append(one_run(args, linger, server, broker, work))
            print(json.dumps(results[-1]), flush=True)
        if not args.no_baseline:
            # the gateway alone, at the same moment: bench.gateway_bench's fan-out (its publisher
            # on core 0, one publish every 10 ms; no Kafka), same viewers and rate
            baseline = load_run("tailgate", server, args.clients, ["kafka:alone"], args.rate, args.seconds, work)
            print(json.dumps({"baseline": baseline}), flush=True)
    finally:
        broker.stop()
        server.stop()
    meta = {"machine": machine(), "cores": layout, "load_average_start": load_start}
    meta["load_average_end"] = os.getloadavg()
    print(json.dumps(meta))
    print(table(results))
    for res in results:
        p99 = res["produce_to_receive"]["p99_ms"]
        verdict = "met" if p99 <= P99_GOAL_MS else "not met"
        print(f"linger_ms={res['linger_ms']}: produce -> receive p99 {p99} ms, goal <= {P99_GOAL_MS:g} ms: {verdict}")
    if baseline:
        b = baseline
        print(
            "gateway alone (bench.gateway_bench's fan-out, same moment): publish -> receive "
            f"p50 {b['p50_ms']} / p99 {b['p99_ms']} / max {b['max_ms']} ms, gateway CPU {b['gateway_cpu']}, "
            f"load client lag p99 {b['loadgen_lag_p99_ms']} / max {b['loadgen_lag_max_ms']} ms"
        )
    write_results("e2e.json", [meta, *results, {"baseline": baseline}])


if __name__ == "__main__":
    main()
