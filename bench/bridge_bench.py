"""Bridge benchmark (a script, not a test): throughput against a bare kafka-python consume
loop in the same run, and produce-to-PUBLISH latency at a steady 5,000 lines/s; with
`--replica`, the cost of waiting for a replica after each publish step
(`redis.min_replicas_acked` 0 against 1, with the same replica attached).

    .venv/bin/python -m bench.bridge_bench [--lines 200000] [--runs 3] [--seconds 10] [--replica]

Starts its own redis-server and embedded broker (Tansu) on free ports, and the bridge
as a real `python -m bridge` process. The process under test (the bridge, or the bare
loop it is compared with) runs alone on core 1; the broker, Redis, the producer and
the measuring side share core 0, so both sides of a comparison get the same CPU.

Throughput is lines published over the time from the first line to the last one seen
in Redis (start-up and group joins excluded); the bare loop is timed the same way,
first record to last. Latency is measured at the Redis side: a subscriber on the
stream's live channel compares each line's arrival with the produce time embedded in
its text (taken before `send()`, so the producer's own batching counts too).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from embedded import KafkaBroker, RedisServer, wait_until
from wire import Keys

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4
LINE = 100
PINNED = (os.cpu_count() or 1) >= 2
TEST_CORE, REST_CORE = 1, 0  # the process under test; everything else
CONSUMER = {"enable_auto_commit": False, "fetch_max_wait_ms": 20, "max_poll_records": 5000}  # as the bridge's


def pin(core: int, pid: int = 0) -> None:
    if PINNED:
        os.sched_setaffinity(pid, {core})


def in_process(core: int, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a forked process of its own on `core`; its result."""
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)

    def run() -> None:
        pin(core)
        send.send(fn(*args))

    proc = ctx.Process(target=run)
    proc.start()
    result = recv.recv()
    proc.join(10)
    return result


def summary(lat: list[float]) -> str:
    """p50, p99 and max in ms, without the first tenth (connections warming up)."""
    warm = sorted(lat[len(lat) // 10 :])
    p50, p99 = statistics.median(warm), warm[int(len(warm) * 0.99)]
    return f"({len(warm)} lines) p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {warm[-1]:.1f} ms"


def line(i: int) -> bytes:
    head = f"{i:09d} GET /api/orders/{i % 9973} HTTP/1.1 200 rt=0.{i % 997:03d} "
    return (head + "x" * (LINE - len(head))).encode()


def create(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def fill(bootstrap: str, topic: str, lines: int, per_message: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024)
    for start in range(0, lines, per_message):
        value = b"\n".join(line(i) for i in range(start, min(lines, start + per_message)))
        producer.send(topic, value, partition=(start // per_message) % PARTITIONS)
    producer.flush()
    producer.close()


def bare_loop(bootstrap: str, topic: str, messages: int) -> float:
    """Records per second of a bare kafka-python poll loop, first record to last."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **CONSUMER)
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    consumer.seek_to_beginning()
    seen, first = 0, 0.0
    while seen < messages:
        for records in consumer.poll(timeout_ms=500).values():
            if not first:
                first = time.perf_counter()
            seen += len(records)
    elapsed = time.perf_counter() - first
    consumer.close()
    return messages / elapsed


class BridgeProc:
    """A `python -m bridge` process on the benchmark's Redis and broker, on core 1."""

    def __init__(
        self, redis_url: str, bootstrap: str, prefix: str, topics: str, log: Path, extra: dict[str, str] | None = None
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAILGATE_")}
        config = log.with_suffix(".yaml")
        config.write_text("bridge: {}\n")
        env.update(
            PYTHONPATH=str(ROOT),
            TAILGATE_CONFIG=str(config),
            TAILGATE_REDIS_URL=redis_url,
            TAILGATE_REDIS_PREFIX=prefix,
            TAILGATE_REDIS_HISTORY_MAXLEN="100000",
            TAILGATE_KAFKA_BOOTSTRAP=bootstrap,
            TAILGATE_BRIDGE_TOPICS=topics,
            TAILGATE_BRIDGE_METRICS_PORT="0",
            TAILGATE_BRIDGE_GROUP_ID=f"bench-{uuid.uuid4().hex[:6]}",
        )
        env.update({k[len("BENCH_") :]: v for k, v in os.environ.items() if k.startswith("BENCH_TAILGATE_")})
        env.update(extra or {})
        taskset = ["taskset", "-c", str(TEST_CORE)] if PINNED else []
        self.out = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*taskset, sys.executable, "-m", "bridge", "--static"],
            cwd=ROOT,
            env=env,
            stdout=self.out,
            stderr=subprocess.STDOUT,
        )

    def assigned(self) -> None:
        wait_until(lambda: "new partitions" in Path(self.out.name).read_text(), 60, what="bridge assigned")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.out.close()


def bridge_rate(
    r: redis.Redis,
    redis_url: str,
    bootstrap: str,
    topic: str,
    count: int,
    log: Path,
    extra: dict[str, str] | None = None,
) -> float:
    """Lines per second the bridge publishes, first line to last, watching the counts hash."""
    prefix = f"b{uuid.uuid4().hex[:6]}:"
    bridge = BridgeProc(redis_url, bootstrap, prefix, topic, log, extra)
    key, stream = Keys(prefix).counts, f"kafka:{topic}"
    try:
        first = wait_until(lambda: int(r.hget(key, stream) or 0) > 0 and time.perf_counter(), 120, 0.005)
        wait_until(lambda: int(r.hget(key, stream) or 0) >= count, 300, 0.005, what="all lines")
        return count / (time.perf_counter() - first)
    finally:
        bridge.stop()


def paced_producer(bootstrap: str, topic: str, rate: int, total: int, linger_ms: int) -> None:
    """Produce `total` lines at `rate`/s, each starting with its produce time."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms)
    started = time.perf_counter()
    for i in range(total):
        producer.send(topic, f"{time.time():.6f} ".encode() + line(i)[:80], partition=i % PARTITIONS)
        if i % 10 == 9:
            wait = started + (i + 1) / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
    producer.flush()
    producer.close()


def feed(bootstrap: str, topic: str, rate: int, seconds: float, linger_ms: int) -> multiprocessing.Process:
    """The paced producer in a process of its own (so the measuring side never delays it)."""
    args = (bootstrap, topic, rate, int(rate * seconds), linger_ms)
    feeder = multiprocessing.get_context("fork").Process(target=paced_producer, args=args)
    feeder.start()
    return feeder


def bare_latency(bootstrap: str, topic: str, rate: int, seconds: float, linger_ms: int) -> list[float]:
    """The same paced produce, read by a bare kafka-python loop: the floor the broker and
    client set, for comparison. Run in a process of its own, on core 1."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **CONSUMER)
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    consumer.seek_to_end()
    consumer.poll(timeout_ms=200)
    total = int(rate * seconds)
    pin(REST_CORE, os.getpid())  # the producer forked next belongs with the rest
    feeder = feed(bootstrap, topic, rate, seconds, linger_ms)
    pin(TEST_CORE, os.getpid())
    lat: list[float] = []
    deadline = time.monotonic() + seconds * 3 + 30
    while len(lat) < total and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=100).values():
            now = time.time()
            lat.extend((now - float(rec.value.split(b" ", 1)[0])) * 1000 for rec in records)
    feeder.join(10)
    consumer.close()
    return lat


def bridge_latency(
    r: redis.Redis,
    redis_url: str,
    bootstrap: str,
    topic: str,
    rate: int,
    seconds: float,
    linger_ms: int,
    log: Path,
    extra: dict[str, str] | None = None,
) -> list[float]:
    """produce -> PUBLISH latencies (ms) of lines produced at `rate` lines/s."""
    prefix = f"b{uuid.uuid4().hex[:6]}:"
    bridge = BridgeProc(redis_url, bootstrap, prefix, topic, log, extra)
    pubsub = r.pubsub()
    pubsub.subscribe(Keys(prefix).live(f"kafka:{topic}"))
    lat: list[float] = []
    done = threading.Event()

    def listen() -> None:
        while not done.is_set():
            msg = pubsub.get_message(timeout=0.2)
            if msg is None or msg["type"] != "message":
                continue
            now = time.time()
            _, _, array = msg["data"].partition(b"\n")
            for obj in json.loads(array):
                lat.append((now - float(obj["text"].split(" ", 1)[0])) * 1000)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    try:
        bridge.assigned()
        feed(bootstrap, topic, rate, seconds, linger_ms).join(seconds * 3 + 30)
        wait_until(lambda: len(lat) >= int(rate * seconds), 60, what="all latency lines")
    finally:
        done.set()
        listener.join(2)
        pubsub.close()
        bridge.stop()
    return lat


def replica_costs(
    r: redis.Redis, server: RedisServer, urls: tuple[str, str], plain: str, args: argparse.Namespace, work: Path
) -> None:
    """With a replica attached: the bridge without and with a WAIT for it after each publish
    step, in turn `--runs` times: throughput (the filled topic) and latency (linger_ms 5)."""
    replica = RedisServer(workdir=str(work)).start(extra=("--replicaof", "127.0.0.1", str(server.port)))
    assert replica.proc is not None
    pin(REST_CORE, replica.proc.pid)
    try:
        online = lambda: r.info("replication").get("slave0", {}).get("state") == "online"  # noqa: E731
        wait_until(online, 30, what="the replica in sync")
        for run, acked in enumerate([0, 1] * args.runs):  # in turn, so drift on a shared machine hits both
            extra = {"TAILGATE_REDIS_MIN_REPLICAS_ACKED": str(acked)}
            what = f"with a replica, redis.min_replicas_acked={acked}"
            rate = bridge_rate(r, *urls, plain, args.lines, work / f"replica{run}.log", extra)
            print(f"{what}: bridge {rate:,.0f} lines/s, 1 line/message")
            live = f"replica{acked}-{uuid.uuid4().hex[:6]}"
            create(urls[1], live)
            lat = bridge_latency(r, *urls, live, args.rate, args.seconds, 5, work / f"rlive{run}.log", extra)
            print(f"{what}: at {args.rate} lines/s, linger_ms=5: produce -> PUBLISH {summary(lat)}")
    finally:
        replica.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3, help="throughput pairs at one line per message")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=5_000)
    parser.add_argument(
        "--linger-ms",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[5, 0],
        help="the latency producer's linger_ms values, one latency pair each (default 5,0)",
    )
    parser.add_argument("--replica", action="store_true", help="also: a replica, WAIT after each step or not")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    server = RedisServer(workdir=str(work)).start()
    broker = KafkaBroker(log_path=str(work / "tansu.log")).start()
    for proc in (server.proc, broker.proc):
        assert proc is not None
        pin(REST_CORE, proc.pid)
    pin(REST_CORE)
    print(f"process under test on core {TEST_CORE}, the rest on core {REST_CORE}" if PINNED else "one core: no pinning")
    r = redis.Redis.from_url(server.url)
    urls = (server.url, broker.bootstrap)
    try:
        uid = uuid.uuid4().hex[:6]
        plain, chunks = f"plain-{uid}", f"chunks-{uid}"
        for topic in (plain, chunks):
            create(broker.bootstrap, topic)
        fill(broker.bootstrap, plain, args.lines, 1)
        fill(broker.bootstrap, chunks, args.lines, 20)
        print(f"filled {plain} ({args.lines} x {LINE}-byte lines) and {chunks} ({args.lines // 20} x 20 lines)")

        ratios = []
        for run in range(1, args.runs + 1):
            bare = in_process(TEST_CORE, bare_loop, broker.bootstrap, plain, args.lines)
            rate = bridge_rate(r, *urls, plain, args.lines, work / f"plain{run}.log")
            ratios.append(rate / bare)
            print(
                f"run {run}, 1 line/message: bare kafka-python loop {bare:,.0f} lines/s, "
                f"bridge {rate:,.0f} lines/s ({rate / bare:.2f} x bare)"
            )
        print(f"bridge / bare, 1 line/message: median {statistics.median(ratios):.2f} x over {len(ratios)} runs")
        bare20 = in_process(TEST_CORE, bare_loop, broker.bootstrap, chunks, args.lines // 20) * 20
        rate20 = bridge_rate(r, *urls, chunks, args.lines, work / "chunks.log")
        print(f"20 lines/message: bare loop {bare20:,.0f} lines/s, bridge {rate20:,.0f} lines/s")

        for linger in args.linger_ms:
            bare_topic, live = f"barelive{linger}-{uid}", f"live{linger}-{uid}"
            for topic in (bare_topic, live):
                create(broker.bootstrap, topic)
            where = f"at {args.rate} lines/s, producer linger_ms={linger}"
            bare = in_process(TEST_CORE, bare_latency, broker.bootstrap, bare_topic, args.rate, args.seconds, linger)
            print(f"{where}: bare loop, produce -> consumed {summary(bare)}")
            log = work / f"live{linger}.log"
            lat = bridge_latency(r, *urls, live, args.rate, args.seconds, linger, log)
            print(f"{where}: bridge, produce -> PUBLISH {summary(lat)}")
        if args.replica:
            replica_costs(r, server, urls, plain, args, work)
    finally:
        r.close()
        broker.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
