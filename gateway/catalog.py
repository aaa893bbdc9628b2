"""The stream catalogue behind `GET /api/streams`.

Lists the configured topics and every stream that published recently (the publish step
records each stream's last publish time and line count), with a line rate computed from
the change in those counts between two reads at least a few seconds apart.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

from wire import Keys
from wire.names import kafka_stream

RATE_WINDOW = 5.0


class Catalog:
    """Known streams with rates; one small cached read of Redis per request."""

    def __init__(self, client: aioredis.Redis, keys: Keys, topics: list[str], window: float) -> None:
        self.client = client
        self.keys = keys
        self.configured = [kafka_stream(t).name for t in topics]
        self.window = window
        self._samples: dict[str, tuple[float, int]] = {}
        self._rates: dict[str, float] = {}

    async def list(self) -> list[dict[str, Any]]:
        now = time.time()
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(self.keys.seen, now - self.window, "+inf", withscores=True)
            pipe.hgetall(self.keys.counts)
            seen_raw, counts_raw = await pipe.execute()
        seen = {name.decode(): score for name, score in seen_raw}
        counts = {k.decode(): int(v) for k, v in counts_raw.items()}
        names = sorted(set(self.configured) | set(seen))
        out = []
        for name in names:
            count = counts.get(name, 0)
            out.append(
                {
                    "stream": name,
                    "kind": name.split(":", 1)[0],
                    "lines": count,
                    "last_seen": seen.get(name),
                    "rate": round(self._rate(name, now, count), 2),
                }
            )
        return out

    def _rate(self, name: str, now: float, count: int) -> float:
        sample = self._samples.get(name)
        if sample is None:
            self._samples[name] = (now, count)
            return self._rates.get(name, 0.0)
        then, before = sample
        if now - then >= RATE_WINDOW:
            self._rates[name] = max(0, count - before) / (now - then)
            self._samples[name] = (now, count)
        return self._rates.get(name, 0.0)
