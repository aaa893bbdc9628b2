"""Reads of a stream's history (a Redis Stream) for backlog and resume, page by page.

Reads use the gateway's small pool of history connections (`gateway.history_connections`),
not the command connection that leases and the catalogue use, so a long read delays no
lease. Every read is bounded in bytes: each page asks for about PAGE_BYTES (its line count
follows the size of the lines read so far), and one request reads at most
`gateway.max_history_bytes`. What that bound cuts off is announced with a `gap` (reason
`history_bytes`), never dropped silently. `since` hands each page on as it is read;
`backlog` reads newest first, so it keeps what it found (at most the byte bound) to hand
it on oldest first.

Resume reads check, in the same MULTI as each XRANGE, what XINFO STREAM says about
removed entries: if trimming removed lines newer than what the client has, the page says
`gap` (reason `trimmed`), right where the lines are missing. Entries are read through
`StoredLines`, which makes what an older producer stored canonical and never raises for an
entry it cannot read.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from gateway.fanout.stored import StoredLines
from wire import Keys
from wire.codes import GapReason
from wire.envelope import UNREADABLE_META, LineId, format_id, parse_id

PAGE_LINES = 1000
PAGE_BYTES = 256 * 1024
FIRST_PAGE_LINES = 100

Match = Callable[[str], bool] | None


@dataclass(slots=True)
class Page:
    """History lines in id order; `gap` says lines are missing just before them, and why."""

    lines: list[dict[str, Any]]
    gap: GapReason | None = None


class _Budget:
    """What one request may still read, and how many lines its next page should ask for."""

    def __init__(self, max_bytes: int) -> None:
        self.left = max_bytes
        self.lines = 0
        self.bytes = 0

    def page(self, wanted: int = PAGE_LINES) -> int:
        size = int(PAGE_BYTES * self.lines / max(self.bytes, 1)) if self.lines else FIRST_PAGE_LINES
        return max(1, min(wanted, size, PAGE_LINES))

    def take(self, fields: dict[bytes, bytes]) -> bool:
        """Count one entry read; False when it is over the bound (it is not to be sent)."""
        size = len(fields.get(b"d", b""))
        self.lines += 1
        self.bytes += size
        self.left -= size
        return self.left >= 0


class History:
    """History reads for the gateway."""

    def __init__(
        self, client: aioredis.Redis, keys: Keys, max_lines: int, max_bytes: int, stored: StoredLines | None = None
    ) -> None:
        self.client = client
        self.keys = keys
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.stored = stored or StoredLines()

    @staticmethod
    def _passes(line: dict[str, Any], match: Match) -> bool:
        # a notice for an unreadable line passes every filter: that line might have matched
        return match is None or match(line["text"]) or line.get("meta") is UNREADABLE_META

    async def head(self, stream: str) -> LineId | None:
        """The newest id in a stream's history, or None when it holds nothing."""
        entries = await self.client.xrevrange(self.keys.hist(stream), count=1)
        return parse_id(entries[0][0]) if entries else None

    async def backlog(self, stream: str, count: int, match: Match, upper: LineId) -> AsyncGenerator[Page, None]:
        """The last `count` lines up to `upper` (matching `match`), oldest first."""
        key = self.keys.hist(stream)
        budget = _Budget(self.max_bytes)
        found: list[tuple[dict[str, Any], int]] = []  # newest first, with their sizes
        top = format_id(upper)
        cut = False
        while len(found) < count and budget.lines < self.max_lines and not cut:
            asked = budget.page(PAGE_LINES if match else count - len(found))
            entries = await self.client.xrevrange(key, max=top, count=asked)
            for entry_id, fields in entries:
                if not budget.take(fields):
                    cut = True
                    break
                line = self.stored.entry(stream, entry_id, fields)
                if self._passes(line, match):
                    found.append((line, len(fields.get(b"d", b""))))
                    if len(found) == count:
                        break
            if len(entries) < asked:
                break
            top = "(" + entries[-1][0].decode()
        gap = GapReason.HISTORY_BYTES if cut else None
        page: list[dict[str, Any]] = []
        size = 0
        for line, nbytes in reversed(found):
            page.append(line)
            size += nbytes
            if size >= PAGE_BYTES or len(page) == PAGE_LINES:
                yield Page(page, gap)
                page, size, gap = [], 0, None
        if page or gap is not None:
            yield Page(page, gap)

    async def since(self, stream: str, cursor: LineId, match: Match) -> AsyncGenerator[Page, None]:
        """Every line after `cursor` (matching `match`), oldest first, a page at a time."""
        key = self.keys.hist(stream)
        budget = _Budget(self.max_bytes)
        read_to = cursor
        while True:
            asked = budget.page()
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xinfo_stream(key)
                pipe.xrange(key, min="(" + format_id(read_to), count=asked)
                info, entries = await pipe.execute(raise_on_error=False)
            if isinstance(info, ResponseError) and not entries:
                return  # no such key: nothing was ever kept, nothing lost
            for reply in (info, entries):
                if isinstance(reply, Exception):
                    raise reply
            gap = GapReason.TRIMMED if _lost_after(info, read_to) else None
            lines: list[dict[str, Any]] = []
            cut = False
            for entry_id, fields in entries:
                if not budget.take(fields):
                    cut = True
                    break
                line = self.stored.entry(stream, entry_id, fields)
                if self._passes(line, match):
                    lines.append(line)
            if lines or gap:
                yield Page(lines, gap)
            if cut:
                # The lines after the last one sent are skipped: the client is told, then goes live.
                yield Page([], GapReason.HISTORY_BYTES)
                return
            if len(entries) < asked:
                return
            read_to = parse_id(entries[-1][0])


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
