"""Reads of a stream's history (a Redis Stream) for backlog and resume, page by page.

Reads use the gateway's small pool of history connections (`gateway.history_connections`),
not the command connection that leases and the catalogue use, so a long read delays no
lease. Every read is bounded in bytes: each page asks for about PAGE_BYTES (its line count
follows the size of the lines read so far), and one request reads at most
`gateway.max_history_bytes`. What that bound cuts off is announced with a `gap` (reason
`history_bytes`), never dropped silently. `since` hands each page on as it is read;
`backlog` reads newest first, so it keeps what it found (at most the byte bound) to hand
it on oldest first.

Every read also reads the history's epoch (wire/epoch.py) in the same MULTI, and every
page says it. Resume reads check, in the same MULTI as each XRANGE, that the history is
still the one the client's cursor belongs to, and where it stands against the cursor
(XINFO STREAM), each told with a `gap` right where lines may be missing:

* another epoch than the client's (or no history now while the client holds one): the
  history was created again, every line in it is new to the client (`reset`; it is read
  from its start);
* the history's last generated id older than the cursor: lines the client saw are gone,
  so whatever followed them may be too (`behind`: a failover to a replica that was behind,
  a restore from an older snapshot). A cursor equal to it is simply the newest line;
* trimming removed lines newer than the cursor (`trimmed`).

After `reset` or `behind` the page names the cursor the client now holds in this history
(`rewind`). Entries are read through `StoredLines`, which makes what an older producer
stored canonical and never raises for an entry it cannot read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis.asyncio as aioredis

from gateway.fanout.stored import StoredLines
from wire import Keys
from wire.codes import GapReason
from wire.envelope import UNREADABLE_META, LineId, format_id, parse_id
from wire.epoch import queue_read

PAGE_LINES = 1000
PAGE_BYTES = 256 * 1024
FIRST_PAGE_LINES = 100

Match = Callable[[dict[str, Any]], bool] | None


START: LineId = (0, 0)  # the cursor of a client that has no line of a history


@dataclass(slots=True)
class Page:
    """History lines in id order; `gap` says lines are missing just before them, and why.
    `epoch` is the epoch of the history they are from (None: it has none); `rewind`, with
    a `reset` or `behind` gap, the cursor the client holds in that history from now on."""

    lines: list[dict[str, Any]]
    gap: GapReason | None = None
    epoch: str | None = None
    rewind: LineId | None = None


class Head(NamedTuple):
    """The newest id in a history (None when it holds nothing) and the history's epoch."""

    last: LineId | None
    epoch: str | None


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
        self,
        client: aioredis.Redis,
        keys: Keys,
        max_lines: int,
        max_bytes: int,
        stored: StoredLines | None = None,
        concurrency: int = 4,
    ) -> None:
        self.client = client
        # At most `concurrency` round trips at once, each on a connection of its own: the
        # cluster client's per-node pools raise when full instead of waiting (a burst of
        # subscribes would fail as `unavailable`), so the wait is here, for every mode.
        self._reads = asyncio.Semaphore(concurrency)
        self.keys = keys
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.stored = stored or StoredLines()

    @staticmethod
    def _passes(line: dict[str, Any], match: Match) -> bool:
        # a notice for an unreadable line passes every filter: that line might have matched
        return match is None or match(line) or line.get("meta") is UNREADABLE_META

    async def head(self, stream: str) -> Head:
        """The newest id in a stream's history and its epoch, read together."""
        async with self._reads, self.client.pipeline(transaction=True) as pipe:
            pipe.xrevrange(self.keys.hist(stream), count=1)
            queue_read(pipe, self.keys, stream)
            entries, exists, value = await pipe.execute()
        return Head(parse_id(entries[0][0]) if entries else None, self.stored.history_epoch(stream, exists, value))

    async def backlog(
        self, stream: str, count: int, match: Match, upper: LineId, epoch: str | None
    ) -> AsyncGenerator[Page, None]:
        """The last `count` lines up to `upper` (matching `match`), oldest first; `upper`
        and `epoch` are the history's `head`."""
        key = self.keys.hist(stream)
        budget = _Budget(self.max_bytes)
        found: list[tuple[dict[str, Any], int]] = []  # newest first, with their sizes
        top = format_id(upper)
        cut = False
        while len(found) < count and budget.lines < self.max_lines and not cut:
            asked = budget.page(PAGE_LINES if match else count - len(found))
            async with self._reads:
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
                yield Page(page, gap, epoch)
                page, size, gap = [], 0, None
        if page or gap is not None:
            yield Page(page, gap, epoch)

    async def since(
        self,
        stream: str,
        cursor: LineId,
        match: Match,
        epoch: str | None = None,
        until: LineId | None = None,
        limit: int | None = None,
        held_cursor: bool = True,
    ) -> AsyncGenerator[Page, None]:
        """Every line after `cursor` (matching `match`), oldest first, a page at a time; the
        first page always comes, to say the history's epoch. With `until`, only the lines
        before it; with `limit`, at most that many.

        `epoch` is the epoch of the history `cursor` is from; None when not known (a client
        from before epochs), and then only the ids are compared. `held_cursor` False: the
        cursor is a time the client asked for (`from`), not an id it holds, so a cursor
        newer than the history is no sign of a history that went back (`behind`)."""
        key = self.keys.hist(stream)
        budget = _Budget(self.max_bytes)
        read_to, held, said = cursor, epoch, False
        top = "+" if until is None else "(" + format_id(until)
        left = limit
        while True:
            asked = budget.page(left if left is not None and match is None else PAGE_LINES)
            async with self._reads, self.client.pipeline(transaction=True) as pipe:
                pipe.xinfo_stream(key)
                pipe.xrange(key, min="(" + format_id(read_to), max=top, count=asked)
                queue_read(pipe, self.keys, stream)
                info, entries, exists, value = await pipe.execute(raise_on_error=False)
            for reply in (entries, exists, value):
                if isinstance(reply, Exception):
                    raise reply
            if exists and isinstance(info, Exception):
                raise info  # (XINFO fails for a missing key: that is no error)
            now = self.stored.history_epoch(stream, exists, value)
            if held is not None and now != held:
                # Another history than the cursor's: read this one from its start.
                yield Page([], GapReason.RESET, now, START)
                if not exists:
                    return
                read_to, held, said = START, now, True
                continue
            if not exists:
                if not said:
                    yield Page([], None, now)
                return  # nothing kept, and the client holds no epoch to say it was lost
            gap, rewind = None, None
            newest = parse_id(info["last-generated-id"])
            if newest < read_to and held_cursor:
                gap, rewind = GapReason.BEHIND, newest
            elif _lost_after(info, read_to):
                gap = GapReason.TRIMMED
            held = now
            lines: list[dict[str, Any]] = []
            cut = False
            for entry_id, fields in entries:
                if not budget.take(fields):
                    cut = True
                    break
                line = self.stored.entry(stream, entry_id, fields)
                if self._passes(line, match):
                    lines.append(line)
                    if left is not None and len(lines) == left:
                        break
            if lines or gap or not said:
                yield Page(lines, gap, now, rewind)
                said = True
            if left is not None:
                left -= len(lines)
                if left <= 0:
                    return
            if cut:
                # The lines after the last one sent are skipped: the client is told, then goes live.
                yield Page([], GapReason.HISTORY_BYTES, now)
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
