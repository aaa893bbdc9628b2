"""Where a bare consumer's latency comes from (a diagnostic script, not a test): the
broker-and-client floor under the bridge's latency figures.

    .venv/bin/python -m bench.broker_floor [--linger-ms 0,5] [--seconds 10]

For each producer linger_ms: 5,000 lines/s on a 4-partition topic of the embedded broker,
read by a bare kafka-python consumer with the bridge's fetch settings. Every produced
record's acknowledgement time comes back from the producer; every fetch the consumer
sends is timed (by wrapping kafka-python's fetch-response handler, which is fine in a
diagnostic and nowhere else). Reported per line: produce -> acknowledged, acknowledged
-> consumed, and how many fetches for its partition were sent after it was acknowledged
and still came back without it. A correct broker answers a fetch with every record it
has acknowledged, so that count should be 0.
"""

from __future__ import annotations

import argparse
import bisect
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer import fetcher

from bench.bridge_bench import CONSUMER, PARTITIONS, TEST_CORE, create, in_process, line, pin
from embedded import KafkaBroker

RATE = 5_000


def produce(bootstrap: str, topic: str, total: int, linger_ms: int) -> dict[tuple[int, int], tuple[float, float]]:
    """(partition, offset) -> (send time, acknowledgement time) of `total` paced lines."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms)
    acked: dict[tuple[int, int], tuple[float, float]] = {}

    def on_ack(sent: float) -> Any:
        return lambda md: acked.__setitem__((md.partition, md.offset), (sent, time.time()))

    started = time.perf_counter()
    for i in range(total):
        sent = time.time()
        producer.send(topic, line(i), partition=i % PARTITIONS).add_callback(on_ack(sent))
        if i % 10 == 9 and (wait := started + (i + 1) / RATE - time.perf_counter()) > 0:
            time.sleep(wait)
    producer.flush()
    producer.close()
    return acked


def consume(
    bootstrap: str, topic: str, total: int, seconds: float, linger_ms: int, fetch_max_wait_ms: int
) -> dict[str, list[float]]:
    """Run the producer in a process of its own, read with a bare consumer, and relate
    every line to the fetches sent for its partition."""
    fetches: dict[int, list[tuple[float, int]]] = defaultdict(list)  # partition -> (sent, offset)
    original = fetcher.Fetcher._handle_fetch_response

    def timed(self: Any, node_id: Any, fetch_offsets: dict, send_time: float, response: Any) -> Any:
        for tp, offset in fetch_offsets.items():
            fetches[tp.partition].append((send_time, offset))
        return original(self, node_id, fetch_offsets, send_time, response)

    fetcher.Fetcher._handle_fetch_response = timed  # type: ignore[method-assign]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **{**CONSUMER, "fetch_max_wait_ms": fetch_max_wait_ms})
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    consumer.seek_to_end()
    consumer.poll(timeout_ms=200)
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    feeder = ctx.Process(target=lambda: send.send(produce(bootstrap, topic, total, linger_ms)))
    feeder.start()
    got: dict[tuple[int, int], float] = {}
    deadline = time.monotonic() + seconds * 3 + 30
    while len(got) < total and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=100).values():
            now = time.time()
            for rec in records:
                got[(rec.partition, rec.offset)] = now
    acked = recv.recv()
    feeder.join(10)
    consumer.close()
    out: dict[str, list[float]] = defaultdict(list)
    for partition in fetches:
        fetches[partition].sort()
    if len(got) < total:
        print(f"  the consumer fell behind: {len(got)} of {total} lines read in time", flush=True)
    for (partition, offset), consumed in sorted(got.items(), key=lambda kv: kv[1])[len(got) // 10 :]:
        sent, ack = acked[(partition, offset)]
        sends = fetches[partition]
        times = [s for s, _ in sends]
        # fetches for this partition from at or below this record's offset, sent before
        # it was consumed: the last one brought it; those of the others sent after its
        # acknowledgement came back without it
        candidates = [s for s, start in sends[: bisect.bisect_left(times, consumed)] if start <= offset]
        missed = sum(1 for s in candidates[:-1] if s > ack)
        out["produce -> acknowledged"].append((ack - sent) * 1000)
        out["acknowledged -> consumed"].append((consumed - ack) * 1000)
        out["produce -> consumed"].append((consumed - sent) * 1000)
        out["fetches that missed it"].append(missed)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--linger-ms", type=lambda v: [int(x) for x in v.split(",")], default=[0, 5])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fetch-max-wait-ms", type=int, default=CONSUMER["fetch_max_wait_ms"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="broker-floor-"))
    broker = KafkaBroker(log_path=str(work / "tansu.log")).start()
    assert broker.proc is not None
    pin(0, broker.proc.pid)
    try:
        for linger in args.linger_ms:
            topic = f"floor{linger}-{uuid.uuid4().hex[:6]}"
            create(broker.bootstrap, topic)
            total = int(RATE * args.seconds)
            wait = args.fetch_max_wait_ms
            print(f"producer linger_ms={linger}, consumer fetch_max_wait_ms={wait}, {RATE} lines/s:", flush=True)
            res = in_process(TEST_CORE, consume, broker.bootstrap, topic, total, args.seconds, linger, wait)
            for name, values in res.items():
                warm = sorted(values)
                p50, p99 = statistics.median(warm), warm[int(len(warm) * 0.99)]
                if name == "fetches that missed it":
                    share = sum(1 for v in warm if v) / len(warm)
                    print(f"  {name:26} {share:6.1%} of lines missed by >= 1 fetch; p99 {p99:.0f}, max {warm[-1]:.0f}")
                else:
                    print(f"  {name:26} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  max {warm[-1]:6.1f} ms")
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
