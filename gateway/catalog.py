"""The stream catalogue behind `GET /api/streams`.

Lists the configured topics and every stream that published recently (the publish step
records each stream's last publish time and line count), with a line rate: the change in
those counts over the last `rate_interval` seconds. The counts are sampled in the
background rather than on request, so the very first request after a gateway starts
already shows rates (once one interval has passed) instead of zeros.

On Redis Cluster the publish step keeps `seen` and `counts` per slot (wire/keys.py): the
catalogue finds those keys with SCAN on every primary and reads each on its owner, so
one read costs a scan of every node's keyspace (COUNT 1000 per step), not one command.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wire import Keys
from wire.names import kafka_stream

log = logging.getLogger(__name__)


class Catalog:
    """Known streams with rates; one small read of Redis per request and per interval."""

    def __init__(
        self, client: aioredis.Redis, keys: Keys, topics: list[str], window: float, rate_interval: float = 5.0
    ) -> None:
        self.client = client
        self.keys = keys
        self.configured = [kafka_stream(t).name for t in topics]
        self.window = window
        self.rate_interval = rate_interval
        self._sample: tuple[float, dict[str, int]] | None = None
        self._rates: dict[str, float] = {}

    async def _read(self, since: float) -> tuple[dict[str, float], dict[str, int]]:
        """Streams published since `since` with their last publish time, and line counts."""
        if not self.keys.cluster:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.zrangebyscore(self.keys.seen, since, "+inf", withscores=True)
                pipe.hgetall(self.keys.counts)
                seen_raw, counts_raw = await pipe.execute()
            return {n.decode(): score for n, score in seen_raw}, {k.decode(): int(v) for k, v in counts_raw.items()}
        seen: dict[str, float] = {}
        counts: dict[str, int] = {}
        async for key in self.client.scan_iter(match=self.keys.per_slot_pattern("seen"), count=1000):
            for name, score in await self.client.zrangebyscore(key, since, "+inf", withscores=True):
                seen[name.decode()] = score
        async for key in self.client.scan_iter(match=self.keys.per_slot_pattern("counts"), count=1000):
            counts.update({k.decode(): int(v) for k, v in (await self.client.hgetall(key)).items()})
        return seen, counts

    async def list(self) -> list[dict[str, Any]]:
        seen, counts = await self._read(time.time() - self.window)
        return [
            {
                "stream": name,
                "kind": name.split(":", 1)[0],
                "lines": counts.get(name, 0),
                "last_seen": seen.get(name),
                "rate": round(self._rates.get(name, 0.0), 2),
            }
            for name in sorted(set(self.configured) | set(seen))
        ]

    def record(self, now: float, counts: dict[str, int]) -> None:
        """Take one sample of the line counts; rates are the change since the previous one."""
        if self._sample is not None:
            then, before = self._sample
            elapsed = now - then
            if elapsed > 0:
                self._rates = {name: max(0, n - before.get(name, 0)) / elapsed for name, n in counts.items()}
        self._sample = (now, counts)

    async def run(self) -> None:
        """Sample the counts every `rate_interval` seconds until cancelled. A failed read
        (Redis down) is logged and skipped; the next sample spans the gap."""
        failing = False
        while True:
            try:
                _, counts = await self._read(float("inf"))
            except RedisError as exc:
                if not failing:
                    log.warning("stream rates: reading line counts failed (%s); retrying", exc)
                failing = True
            else:
                failing = False
                self.record(time.time(), counts)
            await asyncio.sleep(self.rate_interval)
