"""A steady line producer for benchmarks, through the real atomic publish step.

    python -m bench.publisher --redis URL --prefix P --streams kafka:a,kafka:b --rate 1000 --seconds 20
    python -m bench.publisher --cluster-nodes 127.0.0.1:7000,127.0.0.1:7001 ...   # on a Redis Cluster
Publishes `rate` lines per second in total, spread over the streams, one publish call
(all streams together) every `tick` milliseconds. The client and key layout come from
`wire.connect` as the bridge's and the tail agent's do: on a cluster, one script call
per slot in a pipeline split by primary.
"""

from __future__ import annotations

import argparse
import random
import time

from wire import Line, Publisher, StreamBatch, encode_line
from wire.connect import DEFAULT_URL, Connector, RedisTarget

WORDS = [
    "GET",
    "POST",
    "/api/orders",
    "/api/cart",
    "200",
    "201",
    "304",
    "404",
    "500",
    "upstream",
    "slow",
    "cache",
    "hit",
    "miss",
    "user=alice",
    "ms",
]


# Pre-built line bodies: the publisher shares a core with the load generator and Redis,
# so it must not spend it generating random text.
random.seed(7)
BODIES = [" ".join(random.choice(WORDS) for _ in range(12)) for _ in range(997)]


def text(i: int) -> str:
    return f"{i:09d} 10.0.0.{i % 250} {BODIES[i % len(BODIES)]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", default=DEFAULT_URL, help="the node (on a cluster: its credentials only)")
    parser.add_argument("--cluster-nodes", default="", help="host:port seeds: publish to a Redis Cluster")
    parser.add_argument("--prefix", default="tailgate:")
    parser.add_argument("--streams", required=True)
    parser.add_argument("--rate", type=float, required=True, help="lines per second in total")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--tick", type=float, default=10.0, help="milliseconds between publishes")
    args = parser.parse_args()
    streams = args.streams.split(",")
    target = RedisTarget("cluster" if args.cluster_nodes else "single", args.redis, cluster_nodes=args.cluster_nodes)
    pub = Publisher(Connector(target).client("tailgate-bench-publisher"), target.keys(args.prefix), maxlen=10_000)
    per_tick = args.rate * args.tick / 1000.0
    owed = 0.0
    n = 0
    start = time.monotonic()
    next_tick = start
    while time.monotonic() - start < args.seconds:
        owed += per_tick
        count = int(owed)
        owed -= count
        batches: dict[str, StreamBatch] = {}
        for _ in range(count):
            stream = streams[n % len(streams)]
            batch = batches.get(stream) or batches.setdefault(stream, StreamBatch(stream))
            batch.lines.append((0, encode_line(Line(time.time(), text(n)))))
            n += 1
        if batches:
            pub.publish(list(batches.values()))
        next_tick += args.tick / 1000.0
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(f"published {n} lines in {time.monotonic() - start:.1f}s", flush=True)


if __name__ == "__main__":
    main()
