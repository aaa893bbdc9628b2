"""Bridge benchmark (a script, not a test): the bridge with each Kafka client backend
(`bridge.client`) against a bare consume loop of the same client, in the same run:
throughput, and produce-to-PUBLISH latency at a steady 5,000 lines/s.

    .venv/bin/python -m bench.bridge_bench [--lines 200000] [--runs 3] [--seconds 10]
                                           [--clients kafka-python,confluent-kafka]

Starts its own redis-server and embedded broker (Tansu) on free ports, and the bridge
as a real `python -m bridge` process. The process under test (a bridge, or a bare
loop) runs alone on core 1; the broker, Redis, the producer and the measuring side
share core 0, so every side of a comparison gets the same CPU.

Throughput is lines published over the time from the first line to the last one seen
in Redis (start-up excluded); the bare loops are timed the same way, first record to
last. CPU is the process's user+system time over the same span, per line (a bare loop's
includes its client's threads, as the bridge's does). Latency is measured at the Redis
side: a subscriber on the stream's live channel compares each line's arrival with the
produce time embedded in its text (taken before `send()`, so the producer's own
batching counts too); the bare loops' the same way, at the moment a poll returns.
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
from typing import Any, NamedTuple

import redis
from confluent_kafka import OFFSET_BEGINNING
from confluent_kafka import Consumer as RdConsumer
from confluent_kafka import TopicPartition as RdTopicPartition
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
# librdkafka's, as bridge.confluent_kafka sets them
RD_CONSUMER = {
    "group.id": "bench-bare",
    "enable.auto.commit": False,
    "fetch.wait.max.ms": 20,
    "enable.partition.eof": False,
    "socket.nagle.disable": True,
    "fetch.queue.backoff.ms": 10,
}
CLIENTS = ("kafka-python", "confluent-kafka")
MAX_RECORDS = 5000


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


Reader = Callable[[float], list[bytes]]


def reader(client: str, bootstrap: str, topic: str) -> tuple[Reader, Callable[[], None]]:
    """A bare consume loop's poll for `client`, from the start of the topic's partitions:
    read(timeout) -> the values of the records ready (waiting up to timeout for the
    first), as each client is best asked; and its close."""
    if client == "kafka-python":
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, **CONSUMER)
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()

        def read(timeout: float) -> list[bytes]:
            return [r.value for records in consumer.poll(timeout_ms=int(timeout * 1000)).values() for r in records]

        return read, consumer.close
    rd = RdConsumer({"bootstrap.servers": bootstrap, **RD_CONSUMER})
    rd.assign([RdTopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])

    def read_rd(timeout: float) -> list[bytes]:
        # what is queued without waiting; else wait for one record (as bridge.confluent_kafka)
        messages = rd.consume(MAX_RECORDS, 0)
        if not messages:
            first = rd.poll(timeout)
            messages = [first, *rd.consume(MAX_RECORDS - 1, 0)] if first is not None else []
        return [m.value() for m in messages if m.error() is None]

    return read_rd, rd.close


def bare_loop(client: str, bootstrap: str, topic: str, messages: int) -> tuple[float, float]:
    """Records per second of a bare poll loop, first record to last, and its CPU
    microseconds per record."""
    read, close = reader(client, bootstrap, topic)
    seen, first, cpu = 0, 0.0, 0.0
    while seen < messages:
        got = len(read(0.5))
        if got and not first:
            first, cpu = time.perf_counter(), time.process_time()
        seen += got
    elapsed, cpu = time.perf_counter() - first, time.process_time() - cpu
    close()
    return messages / elapsed, cpu / messages * 1e6


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BridgeProc:
    """A `python -m bridge` process on the benchmark's Redis and broker, on `core` (1)."""

    def __init__(
        self, client: str, redis_url: str, bootstrap: str, prefix: str, topics: str, log: Path, core: int = TEST_CORE
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
            TAILGATE_BRIDGE_CLIENT=client,
        )
        env.update({k[len("BENCH_") :]: v for k, v in os.environ.items() if k.startswith("BENCH_TAILGATE_")})
        taskset = ["taskset", "-c", str(core)] if PINNED else []
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


class Rate(NamedTuple):
    lines_per_s: float
    cpu_us: tuple[float, ...]  # CPU per line: the bridge process, Redis, the broker

    def __str__(self) -> str:
        who = ("bridge", "Redis", "broker")
        cpu = ", ".join(f"{name} {us:.2f} us" for name, us in zip(who, self.cpu_us, strict=True))
        return f"{self.lines_per_s:,.0f} lines/s (CPU per line: {cpu})"


def bridge_rate(
    client: str, r: redis.Redis, pids: tuple[int, int], redis_url: str, bootstrap: str, topic: str, n: int, log: Path
) -> Rate:
    """Lines per second a bridge publishes, first line to last, watching the counts hash;
    `pids`: Redis's and the broker's, whose CPU time is counted too."""
    prefix = f"b{uuid.uuid4().hex[:6]}:"
    bridge = BridgeProc(client, redis_url, bootstrap, prefix, topic, log)
    key, stream = Keys(prefix).counts, f"kafka:{topic}"
    try:
        wait_until(lambda: int(r.hget(key, stream) or 0) > 0, 120, 0.005)
        first = time.perf_counter()
        procs = (bridge.proc.pid, *pids)
        cpu = [cpu_seconds(pid) for pid in procs]
        wait_until(lambda: int(r.hget(key, stream) or 0) >= n, 300, 0.005, what="all lines")
        elapsed = time.perf_counter() - first
        used = [(cpu_seconds(pid) - before) / n * 1e6 for pid, before in zip(procs, cpu, strict=True)]
        return Rate(n / elapsed, tuple(used))
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


def bare_latency(client: str, bootstrap: str, topic: str, rate: int, seconds: float, linger_ms: int) -> list[float]:
    """The same paced produce, read by a bare loop of `client`: the floor the broker and
    client set, for comparison. Run in a process of its own, on core 1."""
    read, close = reader(client, bootstrap, topic)  # a new topic: its start is its end
    read(0.2)
    total = int(rate * seconds)
    pin(REST_CORE, os.getpid())  # the producer forked next belongs with the rest
    feeder = feed(bootstrap, topic, rate, seconds, linger_ms)
    pin(TEST_CORE, os.getpid())
    lat: list[float] = []
    deadline = time.monotonic() + seconds * 3 + 30
    while len(lat) < total and time.monotonic() < deadline:
        values = read(0.1)
        now = time.time()
        lat.extend((now - float(value.split(b" ", 1)[0])) * 1000 for value in values)
    feeder.join(10)
    close()
    return lat


def bridge_latency(
    client: str,
    r: redis.Redis,
    redis_url: str,
    bootstrap: str,
    topic: str,
    rate: int,
    seconds: float,
    linger_ms: int,
    log: Path,
) -> list[float]:
    """produce -> PUBLISH latencies (ms) of lines produced at `rate` lines/s."""
    prefix = f"b{uuid.uuid4().hex[:6]}:"
    bridge = BridgeProc(client, redis_url, bootstrap, prefix, topic, log)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3, help="throughput rounds at one line per message")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=5_000)
    parser.add_argument("--clients", type=lambda v: v.split(","), default=list(CLIENTS), help="bridge.client values")
    parser.add_argument(
        "--linger-ms",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[5, 0],
        help="the latency producer's linger_ms values, one latency round each (default 5,0)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    server = RedisServer(workdir=str(work)).start()
    broker = KafkaBroker(log_path=str(work / "tansu.log")).start()
    for proc in (server.proc, broker.proc):
        assert proc is not None
        pin(REST_CORE, proc.pid)
    pin(REST_CORE)
    assert server.proc is not None and broker.proc is not None
    pids = (server.proc.pid, broker.proc.pid)
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

        rates: dict[str, list[float]] = {c: [] for c in args.clients}
        for run in range(1, args.runs + 1):
            for client in args.clients:
                bare, bare_us = in_process(TEST_CORE, bare_loop, client, broker.bootstrap, plain, args.lines)
                rate = bridge_rate(client, r, pids, *urls, plain, args.lines, work / f"plain{run}.log")
                rates[client].append(rate.lines_per_s)
                print(
                    f"run {run}, 1 line/message, {client}: bare loop {bare:,.0f} lines/s ({bare_us:.2f} us CPU per "
                    f"line), bridge {rate} = {rate.lines_per_s / bare:.2f} x its bare loop",
                    flush=True,
                )
            if len(args.clients) == 2:
                a, b = args.clients
                print(f"run {run}: {b} bridge / {a} bridge = {rates[b][-1] / rates[a][-1]:.2f} x", flush=True)
        if len(args.clients) == 2:
            a, b = args.clients
            ratios = [y / x for x, y in zip(rates[a], rates[b], strict=True)]
            print(f"{b} bridge / {a} bridge, 1 line/message: median {statistics.median(ratios):.2f} x")
        for client in args.clients:
            bare20, _ = in_process(TEST_CORE, bare_loop, client, broker.bootstrap, chunks, args.lines // 20)
            rate20 = bridge_rate(client, r, pids, *urls, chunks, args.lines, work / f"chunks-{client}.log")
            print(f"20 lines/message, {client}: bare loop {bare20 * 20:,.0f} lines/s, bridge {rate20}", flush=True)

        for linger in args.linger_ms:
            for client in args.clients:
                bare_topic, live = f"barelive{linger}{client}-{uid}", f"live{linger}{client}-{uid}"
                for topic in (bare_topic, live):
                    create(broker.bootstrap, topic)
                where = f"at {args.rate} lines/s, producer linger_ms={linger}, {client}"
                feed_args = (broker.bootstrap, bare_topic, args.rate, args.seconds, linger)
                bare = in_process(TEST_CORE, bare_latency, client, *feed_args)
                print(f"{where}: bare loop, produce -> consumed {summary(bare)}", flush=True)
                log = work / f"live{linger}-{client}.log"
                lat = bridge_latency(client, r, *urls, live, args.rate, args.seconds, linger, log)
                print(f"{where}: bridge, produce -> PUBLISH {summary(lat)}", flush=True)
    finally:
        r.close()
        broker.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
