"""Which minions exist: the master's accepted minion ids, cached.

Refreshed after `salt.minions_ttl`, and at most every few seconds on a miss, so a newly
accepted minion shows up quickly without letting unknown ids hammer Salt. Used by file
stream admission and by the console's picker (gateway.http.api).
"""

from __future__ import annotations

import asyncio
import time

from gateway.tails.salt import SaltClient

MISS_REFRESH_SECONDS = 5.0


class Minions:
    """The accepted minion ids, cached."""

    def __init__(self, salt: SaltClient, ttl: float) -> None:
        self.salt = salt
        self.ttl = ttl
        self._ids: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _refresh(self, min_age: float) -> None:
        async with self._lock:
            if time.monotonic() - self._loaded_at < min_age:
                return  # another caller refreshed while we waited
            self._ids = frozenset(await self.salt.minions())
            self._loaded_at = time.monotonic()

    async def list(self) -> list[str]:
        """Every accepted minion id; raises `SaltFailure` when Salt cannot say."""
        if time.monotonic() - self._loaded_at > self.ttl:
            await self._refresh(self.ttl)
        return sorted(self._ids)

    async def known(self, minion: str) -> bool:
        """Whether `minion` is an accepted minion; raises `SaltFailure` when Salt cannot say."""
        age = time.monotonic() - self._loaded_at
        if age > self.ttl or (minion not in self._ids and age > MISS_REFRESH_SECONDS):
            await self._refresh(min(self.ttl, MISS_REFRESH_SECONDS))
        return minion in self._ids
