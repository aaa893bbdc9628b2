"""Which minions exist, and which of their files may be tailed: the console's picker.

`Minions` caches the master's accepted minion ids (refreshed after `salt.minions_ttl`,
and at most every few seconds on a miss, so a newly accepted minion shows up quickly
without letting unknown ids hammer Salt). The handlers serve ``GET /api/minions`` (an
addition to the contract, for the picker) and ``GET /api/minions/<id>/files`` (the
contract's), the latter through ``logtail.list_files`` filtered by the gateway's own
allowlist.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.access import audit
from gateway.guard import ApiAccess, Guard
from gateway.salt_client import SaltClient, SaltFailure
from wire.filepolicy import refusal
from wire.names import StreamNameError, check_minion, file_stream

log = logging.getLogger(__name__)

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


class MinionsHandler(ApiAccess):
    """`GET /api/minions`: the minions a file stream can be opened on (by this caller)."""

    def initialize(self, minions: Minions | None, guard: Guard | None = None) -> None:
        self.minions = minions
        self.guard = guard

    async def get(self) -> None:
        if self.minions is None:
            self.reply(200, {"minions": [], "enabled": False})
            return
        grants = self.grants
        if not grants.unrestricted and not grants.files:
            self.reply(200, {"minions": [], "enabled": True})  # no file stream granted: no Salt call
            return
        try:
            ids = await self.minions.list()
        except SaltFailure as exc:
            self.fail(503, "unavailable", exc.message)
            return
        self.reply(200, {"minions": [m for m in ids if grants.may_see_minion(m)], "enabled": True})


class MinionFilesHandler(ApiAccess):
    """`GET /api/minions/<id>/files`: the files a minion lets us tail, within our allowlist
    and the caller's stream patterns."""

    def initialize(
        self, minions: Minions | None, salt: SaltClient | None, allowlist: list[str], guard: Guard | None = None
    ) -> None:
        self.minions = minions
        self.salt = salt
        self.allowlist = allowlist
        self.guard = guard

    async def get(self, minion: str) -> None:
        try:
            check_minion(minion)
        except StreamNameError as exc:
            self.fail(400, "bad_request", str(exc))
            return
        grants = self.grants
        if not grants.may_see_minion(minion):
            if self.guard is not None:
                self.guard.forbidden()
            audit("list_files", "refuse", self.identity, self.address, minion=minion, reason="no file pattern")
            self.fail(403, "forbidden", f"you may not open files on {minion}")
            return
        audit("list_files", "grant", self.identity, self.address, minion=minion)
        if self.minions is None or self.salt is None:
            self.fail(503, "unavailable", "file streams are off on this gateway (salt.mode: off)")
            return
        try:
            if not await self.minions.known(minion):
                self.fail(404, "not_found", f"no minion {minion!r} is known to the Salt master")
                return
            ret = await self.salt.run(minion, "logtail.list_files")
        except SaltFailure as exc:
            self.fail(504 if exc.reason == "timeout" else 503, "unavailable", exc.message)
            return
        if not isinstance(ret, dict) or not ret.get("ok"):
            message = ret.get("message") if isinstance(ret, dict) else str(ret)[:300]
            self.fail(502, "unavailable", f"logtail.list_files on {minion} failed: {message}")
            return
        files = []
        for entry in ret.get("files", []):
            path = entry.get("path") if isinstance(entry, dict) else None
            if refusal(path, self.allowlist, resolve=False) is not None:
                continue
            try:
                stream = file_stream(minion, path)
            except StreamNameError:
                continue
            if not grants.allows(stream):
                continue
            files.append({"path": path, "stream": stream.name, "size": entry.get("size"), "mtime": entry.get("mtime")})
        self.reply(200, {"minion": minion, "files": files, "truncated": bool(ret.get("truncated"))})
