"""Bridge benchmark (a script, not a test): throughput against a bare kafka-python consume
loop in the same run, and produce-to-PUBLISH latency at a steady 5,000 lines/s.

    .venv/bin/python -m bench.bridge_bench [--lines 200000] [--seconds 10]

Starts its own redis-server and embedded broker (Tansu) on free ports, and the bridge
as a real `python -m bridge` process. Throughput is lines published over the time from
the first line to the last one seen in Redis (start-up and group joins excluded); the
bare loop is timed the same way, first record to last. Latency is measured at the Redis
side: a subscriber on the stream's live channel compares each line's arrival with the
produce time embedded in its text.
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
from pathlib import Path

import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from embedded import KafkaBroker, RedisServer, wait_until
from wire import Keys

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4
LINE = 100


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
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20, max_poll_records=5000
    )
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
    """A `python -m bridge` process on the benchmark's Redis and broker."""

    def __init__(self, redis_url: str, bootstrap: str, prefix: str, topics: str, log: Path) -> None:
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
        env.update({k: v for k, v in os.environ.items() if k.startswith("BENCH_TAILGATE_")})
        env.update({k[len("BENCH_") :]: v for k, v in os.environ.items() if k.startswith("BENCH_TAILGATE_")})
        self.out = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "--static"], cwd=ROOT, env=env, stdout=self.out, stderr=subprocess.STDOUT
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.out.close()


def bridge_rate(r: redis.Redis, bridge_args: tuple, stream_count: int, prefix: str, stream: str) -> float:
    """Lines per second the bridge publishes, first line to last, watching the counts hash."""
    bridge = BridgeProc(*bridge_args)
    key = Keys(prefix).counts
    try:
        first = wait_until(lambda: int(r.hget(key, stream) or 0) > 0 and time.perf_counter(), 120, 0.005)
        wait_until(lambda: int(r.hget(key, stream) or 0) >= stream_count, 300, 0.005, what="all lines")
        return stream_count / (time.perf_counter() - first)
    finally:
        bridge.stop()


def paced_producer(bootstrap: str, topic: str, rate: int, total: int) -> None:
    """Produce `total` lines at `rate`/s, each starting with its produce time (a process of
    its own, so the measuring subscriber never delays it)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    started = time.perf_counter()
    for i in range(total):
        producer.send(topic, f"{time.time():.6f} ".encode() + line(i)[:80], partition=i % PARTITIONS)
        if i % 10 == 9:
            wait = started + (i + 1) / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
    producer.flush()
    producer.close()


def bare_latency(bootstrap: str, topic: str, rate: int, seconds: float):
    """The same paced produce, read by a bare kafka-python loop: the floor the broker and
    client set (and how loaded the machine is), for comparison."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20, max_poll_records=5000
    )
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    consumer.seek_to_end()
    consumer.poll(timeout_ms=200)
    total = int(rate * seconds)
    feeder = multiprocessing.get_context("fork").Process(target=paced_producer, args=(bootstrap, topic, rate, total))
    feeder.start()
    lat: list[float] = []
    deadline = time.monotonic() + seconds * 3 + 30
    while len(lat) < total and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=100).values():
            now = time.time()
            lat.extend((now - float(rec.value.split(b" ", 1)[0])) * 1000 for rec in records)
    feeder.join(10)
    consumer.close()
    warm = sorted(lat[len(lat) // 10 :])
    return statistics.median(warm), warm[int(len(warm) * 0.99)], warm[-1], len(warm)


def latency(r: redis.Redis, bootstrap: str, bridge_args: tuple, prefix: str, topic: str, rate: int, seconds: float):
    """produce -> PUBLISH latencies (ms) of lines produced at `rate` lines/s."""
    bridge = BridgeProc(*bridge_args)
    stream = f"kafka:{topic}"
    pubsub = r.pubsub()
    pubsub.subscribe(Keys(prefix).live(stream))
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
    total = int(rate * seconds)
    try:
        wait_until(lambda: "new partitions" in Path(bridge.out.name).read_text(), 60, what="bridge assigned")
        feeder = multiprocessing.get_context("fork").Process(
            target=paced_producer, args=(bootstrap, topic, rate, total)
        )
        feeder.start()
        feeder.join(seconds * 3 + 30)
        wait_until(lambda: len(lat) >= total, 60, what="all latency lines")
    finally:
        done.set()
        listener.join(2)
        bridge.stop()
    warm = lat[len(lat) // 10 :]  # drop the first tenth (connections warming up)
    warm.sort()
    return statistics.median(warm), warm[int(len(warm) * 0.99)], warm[-1], len(warm)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=5_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    server = RedisServer(workdir=str(work)).start()
    broker = KafkaBroker(log_path=str(work / "tansu.log")).start()
    r = redis.Redis.from_url(server.url)
    try:
        uid = uuid.uuid4().hex[:6]
        plain, chunks, live = f"plain-{uid}", f"chunks-{uid}", f"live-{uid}"
        for topic in (plain, chunks, live):
            create(broker.bootstrap, topic)
        fill(broker.bootstrap, plain, args.lines, 1)
        fill(broker.bootstrap, chunks, args.lines, 20)
        print(f"filled {plain} ({args.lines} x {LINE}-byte lines) and {chunks} ({args.lines // 20} x 20 lines)")

        bare = bare_loop(broker.bootstrap, plain, args.lines)
        print(f"bare kafka-python loop, 1 line/message: {bare:,.0f} lines/s")
        prefix = f"b{uid}:"
        rate1 = bridge_rate(
            r, (server.url, broker.bootstrap, prefix, plain, work / "b1.log"), args.lines, prefix, f"kafka:{plain}"
        )
        print(f"bridge, 1 line/message:                 {rate1:,.0f} lines/s  ({rate1 / bare:.2f} x bare)")
        bare20 = bare_loop(broker.bootstrap, chunks, args.lines // 20) * 20
        print(f"bare kafka-python loop, 20 lines/message: {bare20:,.0f} lines/s")
        rate20 = bridge_rate(
            r, (server.url, broker.bootstrap, prefix, chunks, work / "b2.log"), args.lines, prefix, f"kafka:{chunks}"
        )
        print(f"bridge, 20 lines/message:               {rate20:,.0f} lines/s  ({rate20 / bare20:.2f} x bare)")
        bare_topic = f"barelive-{uid}"
        create(broker.bootstrap, bare_topic)
        p50, p99, worst, n = bare_latency(broker.bootstrap, bare_topic, args.rate, args.seconds)
        print(
            f"bare loop latency at {args.rate} lines/s ({n} lines): produce -> consumed p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms, max {worst:.1f} ms"
        )
        p50, p99, worst, n = latency(
            r,
            broker.bootstrap,
            (server.url, broker.bootstrap, prefix, live, work / "b3.log"),
            prefix,
            live,
            args.rate,
            args.seconds,
        )
        print(
            f"bridge latency at {args.rate} lines/s ({n} lines): produce -> PUBLISH p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms, max {worst:.1f} ms"
        )
    finally:
        r.close()
        broker.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
