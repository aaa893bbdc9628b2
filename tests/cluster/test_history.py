"""History reads on Redis Cluster under a burst of subscribes.

redis-py's asyncio cluster client does not wait for a free connection: a node's pool that
is full raises. The gateway's history reads must wait their turn instead, so a burst of
viewers subscribing at once each gets its history, none an `unavailable`.
"""

from __future__ import annotations

import asyncio
import time

from embedded import RedisClusterNodes
from gateway.fanout.history import START, History
from wire import Keys, Line, Publisher, StreamBatch, encode_line
from wire.cluster import async_client, sync_client


async def test_a_burst_of_reads_beyond_the_pool_waits_instead_of_failing(
    redis_cluster: RedisClusterNodes, ckeys: Keys
) -> None:
    stream = "kafka:burst"
    writer = sync_client("redis://", redis_cluster.seeds)
    try:
        lines = [(0, encode_line(Line(time.time(), f"n {i}"))) for i in range(20)]
        Publisher(writer, ckeys).publish([StreamBatch(stream, lines)])
    finally:
        writer.close()
    client = async_client("redis://", redis_cluster.seeds, max_connections=2)
    history = History(client, ckeys, max_lines=1000, max_bytes=1 << 20, concurrency=2)

    async def read() -> int:
        head = await history.head(stream)
        count = 0
        async for page in history.since(stream, START, None, head.epoch):
            count += len(page.lines)
        return count

    try:
        counts = await asyncio.wait_for(asyncio.gather(*(read() for _ in range(200))), 30)
    finally:
        await client.aclose()
    assert counts == [20] * 200
