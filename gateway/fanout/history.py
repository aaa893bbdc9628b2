"""Reads of a stream's history (a Redis Stream) for backlog and resume.

Uses the process's one command connection. Resume reads check, in the same MULTI as the
XRANGE, what XINFO STREAM says about removed entries: if trimming removed lines newer
than the client's cursor, the client gets `gap` (lines it will never see) instead of
silence. Entries are read through `StoredLines`, which makes what an older producer
stored canonical and never raises for an entry it cannot read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from gateway.fanout.stored import StoredLines
from wire import Keys
from wire.envelope import UNREADABLE_META, LineId, format_id, parse_id

PAGE = 1000


class History:
    """History reads for the gateway."""

    def __init__(self, client: aioredis.Redis, keys: Keys, max_lines: int, stored: StoredLines | None = None) -> None:
        self.client = client
        self.keys = keys
        self.max_lines = max_lines
        self.stored = stored or StoredLines()

    def _passes(self, line: dict[str, Any], match: Callable[[str], bool] | None) -> bool:
        # a notice for an unreadable line passes every filter: that line might have matched
        return match is None or match(line["text"]) or line.get("meta") is UNREADABLE_META

    async def head(self, stream: str) -> LineId | None:
        """The newest id in a stream's history, or None when it holds nothing."""
        entries = await self.client.xrevrange(self.keys.hist(stream), count=1)
        return parse_id(entries[0][0]) if entries else None

    async def backlog(
        self, stream: str, count: int, match: Callable[[str], bool] | None
    ) -> tuple[list[dict[str, Any]], LineId | None]:
        """The last `count` lines (matching `match`) and the newest id at read time."""
        key = self.keys.hist(stream)
        found: list[dict[str, Any]] = []
        head: LineId | None = None
        upper = "+"
        scanned = 0
        while len(found) < count and scanned < self.max_lines:
            entries = await self.client.xrevrange(
                key, max=upper, count=PAGE if match else min(PAGE, count - len(found))
            )
            if not entries:
                break
            if head is None:
                head = parse_id(entries[0][0])
            for entry_id, fields in entries:
                line = self.stored.entry(stream, entry_id, fields)
                if self._passes(line, match):
                    found.append(line)
                    if len(found) == count:
                        break
            scanned += len(entries)
            upper = "(" + entries[-1][0].decode()
        if head is None:
            head = await self.head(stream)
        found.reverse()
        return found, head

    async def since(
        self, stream: str, cursor: LineId, match: Callable[[str], bool] | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """Every line after `cursor` (matching `match`), and whether some were lost to
        trimming (`gap`)."""
        key = self.keys.hist(stream)
        lower = "(" + format_id(cursor)
        out: list[dict[str, Any]] = []
        gap = False
        read_to = cursor
        while True:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xinfo_stream(key)
                pipe.xrange(key, min=lower, count=PAGE)
                info, entries = await pipe.execute(raise_on_error=False)
            if isinstance(info, ResponseError) and not entries:
                return out, False  # no such key: nothing was ever kept, nothing lost
            for reply in (info, entries):
                if isinstance(reply, Exception):
                    raise reply
            if _lost_after(info, read_to):
                gap = True
            for entry_id, fields in entries:
                line = self.stored.entry(stream, entry_id, fields)
                if self._passes(line, match):
                    out.append(line)
            if len(entries) < PAGE:
                return out, gap
            read_to = parse_id(entries[-1][0])
            lower = "(" + entries[-1][0].decode()


def _lost_after(info: dict[str, Any], cursor: LineId) -> bool:
    """Whether trimming removed lines newer than `cursor`.

    Trimming does not record what it removed (`max-deleted-entry-id` only follows XDEL),
    so this is conservative: lines were removed at some point and the oldest kept line is
    newer than the cursor. It errs only when the cursor is exactly the last removed line,
    and then reports a gap that did not happen rather than hide one that did.
    """
    first = info.get("first-entry")
    if not first:
        return False
    deleted = info.get("max-deleted-entry-id")
    if deleted and parse_id(deleted) > cursor:
        return True
    removed = int(info.get("entries-added") or 0) > int(info.get("length") or 0)
    return removed and parse_id(first[0]) > cursor
