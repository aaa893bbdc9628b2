"""One client's view: its subscriptions, their cursors, and a send queue bounded in bytes.

Everything a client receives goes through `Session`, which enforces the contract's
guarantee per stream: strictly increasing ids, no duplicates, and anything missed is
announced (`dropped`, `gap`). Live batches arriving while a subscription catches up from
history are held and trimmed by id when it goes live, so the switch neither loses nor
repeats a line. When the client reads slower than lines arrive, the oldest pending
lines are dropped (never control frames) and counted; a client that makes no progress
for too long is closed with 1013.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.frames import encode, lines_frame
from gateway.hub import Batch
from wire.envelope import LineId, parse_id

log = logging.getLogger(__name__)

HISTORY_FRAME_LINES = 500
CLOSE_TRY_AGAIN_LATER = 1013

SendFn = Callable[[bytes, "bytes | None"], "Awaitable[None] | None"]
CloseFn = Callable[[int, str], None]


@dataclass(slots=True)
class _Sub:
    cursor: LineId | None = None  # the newest id this client has, or is known to need not
    start: LineId | None = None  # where a live-only subscription began, to resume from
    catching_up: bool = True
    held: list[Batch] = field(default_factory=list)
    held_bytes: int = 0
    generation: int = 0


@dataclass(slots=True)
class _Item:
    """A queued frame. Line frames (stream set) may be dropped; control frames may not."""

    data: bytes
    stream: str | None = None
    lines: int = 0
    published_ms: int = 0  # live frames: when Redis published their newest line
    wire: bytes | None = None  # the frame already framed for the socket, shared by clients
    notice: str | None = None  # a `dropped` notice for this stream, encoded when sent


class Session:
    """A client session, independent of the transport (tests drive it directly)."""

    def __init__(
        self,
        send: SendFn,
        close: CloseFn,
        max_queue_bytes: int,
        slow_timeout: float,
        metrics: Any = None,
        peer: str = "",
        closed_errors: tuple[type[BaseException], ...] = (OSError,),
    ) -> None:
        self._send = send
        self._close = close
        self.max_queue_bytes = max_queue_bytes
        self.slow_timeout = slow_timeout
        self.metrics = metrics
        self.peer = peer
        self.closed_errors = closed_errors
        self.subs: dict[str, _Sub] = {}
        self._queue: deque[_Item] = deque()
        self._drops: dict[str, int] = {}
        self.queued_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self._last_progress = time.monotonic()
        self.closed = False

    # Subscription lifecycle -------------------------------------------------------

    def begin(self, stream: str, cursor: LineId | None = None) -> int:
        """Start (or restart) catching up on `stream`; live batches are held meanwhile.

        Returns a generation number that `finish` must present, so a catch-up that a
        newer subscribe or a reconnect superseded is ignored.
        """
        sub = self.subs.get(stream)
        if sub is None:
            sub = self.subs[stream] = _Sub(cursor=cursor)
        else:
            sub.catching_up, sub.held, sub.held_bytes = True, [], 0
            if cursor is not None:
                sub.cursor = cursor
        sub.generation += 1
        return sub.generation

    def resume_point(self, stream: str) -> LineId:
        """The id after which this client needs every line of `stream`."""
        sub = self.subs.get(stream)
        if sub is None:
            return (0, 0)
        return sub.cursor or sub.start or (0, 0)

    def finish(
        self,
        stream: str,
        generation: int,
        history: list[dict[str, Any]],
        head: LineId | None,
        gap: bool = False,
        start: LineId | None = None,
    ) -> None:
        """End a catch-up: send `gap` if any, the history lines, then the held live lines
        newer than the last of them.

        `head` is the newest id in history when a backlog was read: every line up to it was
        considered, so later copies are skipped. A live-only subscription passes no head
        (its held lines are all new to the client, whatever the order in which Redis
        answered) but a `start`, the point a reconnect resumes from if nothing arrived."""
        sub = self.subs.get(stream)
        if sub is None or sub.generation != generation or not sub.catching_up:
            return
        if gap:
            self.control({"type": "gap", "stream": stream})
        cursor = sub.cursor
        fresh = [line for line in history if cursor is None or parse_id(line["id"]) > cursor]
        for i in range(0, len(fresh), HISTORY_FRAME_LINES):
            chunk = fresh[i : i + HISTORY_FRAME_LINES]
            self._enqueue_lines(stream, lines_frame(stream, chunk), len(chunk), 0)
        if fresh:
            cursor = parse_id(fresh[-1]["id"])
        if head is not None and (cursor is None or head > cursor):
            cursor = head
        sub.cursor = cursor
        if start is not None:
            sub.start = start
        sub.catching_up = False
        held, sub.held, sub.held_bytes = sub.held, [], 0
        for batch in held:
            self.deliver(batch)

    def drop(self, stream: str) -> None:
        """Forget a subscription (unsubscribe or replaced). Queued frames still go out."""
        self.subs.pop(stream, None)

    # Delivery ---------------------------------------------------------------------

    def deliver(self, batch: Batch) -> None:
        """Take a live batch from the hub: hold, trim or queue it."""
        sub = self.subs.get(batch.stream)
        if sub is None or self.closed:
            return
        if sub.catching_up:
            sub.held.append(batch)
            sub.held_bytes += len(batch.frame)
            while sub.held_bytes > self.max_queue_bytes and len(sub.held) > 1:
                old = sub.held.pop(0)
                sub.held_bytes -= len(old.frame)
                self._note_dropped(batch.stream, old.count)
            return
        if sub.cursor is not None and batch.first <= sub.cursor:
            trimmed = batch.after(sub.cursor)
            if trimmed is None:
                return
            batch = trimmed
        sub.cursor = batch.last
        if self._writer is None and not self._queue:
            # The common case, inline: nothing pending, the shared frame goes to the socket.
            self._last_progress = time.monotonic()
            try:
                pending = self._send(batch.frame, batch.wire)
            except self.closed_errors as exc:
                self._transport_failed(exc)
                return
            if self.metrics is not None:
                self.metrics.sent_now(batch.stream, batch.count, len(batch.frame), batch.lag)
            if pending is not None:
                self._await_pending(pending)
            return
        self._enqueue_lines(batch.stream, batch.frame, batch.count, batch.last[0], batch.wire)

    def control(self, obj: dict[str, Any]) -> None:
        """Queue a control frame (never dropped)."""
        self._push(_Item(encode(obj)))

    def send_raw(self, data: bytes) -> None:
        self._push(_Item(data))

    def _enqueue_lines(
        self, stream: str, frame: bytes, count: int, published_ms: int, wire: bytes | None = None
    ) -> None:
        self._push(_Item(frame, stream, count, published_ms, wire=wire))
        if self.queued_bytes > self.max_queue_bytes:
            self._shed()

    def _push(self, item: _Item) -> None:
        if self.closed:
            return
        if self._writer is None and not self._queue:
            # Fast path: nothing pending, so hand the frame to the socket now. A task is
            # only needed when the socket does not take it at once.
            self._last_progress = time.monotonic()
            pending = self._transmit(item)
            if pending is not None:
                self._await_pending(pending)
            return
        self._queue.append(item)
        self.queued_bytes += len(item.data)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop(None))

    def _await_pending(self, pending: Awaitable[None]) -> None:
        """The socket did not take a frame at once: write the rest from a task."""
        if not isinstance(pending, asyncio.Future) or not pending.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_loop(pending))
        elif pending.exception() is not None:
            self._transport_failed(pending.exception())

    def _transmit(self, item: _Item) -> Awaitable[None] | None:
        """Hand one frame to the transport; returns what to await before the next one."""
        data = item.data
        if item.notice is not None:
            data = encode({"type": "dropped", "stream": item.notice, "count": self._drops.pop(item.notice)})
        try:
            pending = self._send(data, item.wire)
        except self.closed_errors as exc:
            self._transport_failed(exc)
            return None
        if self.metrics is not None and item.stream is not None:
            self.metrics.sent(item.stream, item.lines, len(data), item.published_ms)
        return pending

    def _transport_failed(self, exc: BaseException | None) -> None:
        # The handler's on_close cleans up the subscriptions; stop queueing meanwhile.
        log.info("send to %s failed: %s", self.peer, exc)
        self.closed = True
        self._queue.clear()
        self.queued_bytes = 0

    def _shed(self) -> None:
        """Drop the oldest pending line frames until the queue fits, and say so.

        Control frames and the newest line frame always stay. One `dropped` notice per
        stream waits at the head of the queue (everything still queued is newer than what
        was dropped); its count grows with every shed until it is sent.
        """
        excess = self.queued_bytes - self.max_queue_bytes
        items = list(self._queue)
        survivors: list[_Item] = []
        dropped: dict[str, int] = {}
        for i, item in enumerate(items):
            if excess > 0 and item.stream is not None and i < len(items) - 1:
                excess -= len(item.data)
                self.queued_bytes -= len(item.data)
                dropped[item.stream] = dropped.get(item.stream, 0) + item.lines
            else:
                survivors.append(item)
        notices = []
        for stream, count in dropped.items():
            if stream not in self._drops:
                notices.append(_Item(b"", notice=stream))
            self._drops[stream] = self._drops.get(stream, 0) + count
            self._count_dropped(stream, count)
        self._queue = deque(notices + survivors)
        if time.monotonic() - self._last_progress > self.slow_timeout:
            self._close_slow()

    def _count_dropped(self, stream: str, count: int) -> None:
        if self.metrics is not None:
            self.metrics.dropped(stream, count)

    def _note_dropped(self, stream: str, count: int) -> None:
        self._count_dropped(stream, count)
        self.control({"type": "dropped", "stream": stream, "count": count})

    def check_stalled(self) -> None:
        """Close the client if it has made no progress for too long (periodic sweep)."""
        if self._queue and time.monotonic() - self._last_progress > self.slow_timeout:
            self._close_slow()

    def _close_slow(self) -> None:
        log.warning(
            "closing %s (1013): no progress for %.0fs with %d bytes pending",
            self.peer,
            time.monotonic() - self._last_progress,
            self.queued_bytes,
        )
        if self.metrics is not None:
            self.metrics.slow_closed.inc()
        self.close(CLOSE_TRY_AGAIN_LATER, "client too slow")

    async def _write_loop(self, pending: Awaitable[None] | None) -> None:
        try:
            while not self.closed:
                if pending is not None:
                    await pending
                    self._last_progress = time.monotonic()
                if not self._queue:
                    break
                item = self._queue.popleft()
                self.queued_bytes -= len(item.data)
                pending = self._transmit(item)
        except asyncio.CancelledError:
            raise
        except self.closed_errors as exc:
            self._transport_failed(exc)
        finally:
            self._writer = None

    def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self._queue.clear()
            self.queued_bytes = 0
            self._close(code, reason)
