"""A client's send queue, bounded in bytes: the last step before its socket.

A frame goes straight to the socket when nothing is pending (the common case, and the
one the shared, pre-framed live batches take); otherwise it waits in order, written by
one task. When the client reads slower than lines arrive, the oldest pending line
frames are dropped (never control frames) and replaced by one `dropped` notice per
stream, so the client is told; a client that makes no progress for
`gateway.slow_client_timeout` is closed with 1013.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.fanout.frames import encode
from gateway.fanout.hub import Batch
from wire.codes import CloseCode

log = logging.getLogger(__name__)

SendFn = Callable[[bytes, "bytes | None"], "Awaitable[None] | None"]
CloseFn = Callable[[int, str], None]


class DeliveryMetrics(Protocol):
    """What delivery counts (gateway.metrics.GatewayMetrics provides it)."""

    def sent(self, stream: str, lines: int, nbytes: int, published_ms: int) -> None: ...

    def sent_now(self, stream: str, lines: int, nbytes: int, lag: tuple[int, float]) -> None: ...

    def dropped(self, stream: str, lines: int) -> None: ...

    def slow_client_closed(self) -> None: ...


@dataclass(slots=True)
class _Item:
    """A queued frame. Line frames (stream set) may be dropped; control frames may not."""

    data: bytes
    stream: str | None = None
    lines: int = 0
    published_ms: int = 0  # live frames: when Redis published their newest line
    ws_frame: bytes | None = None  # the frame already framed for the socket, shared by clients
    notice: str | None = None  # a `dropped` notice for this stream, encoded when sent


class Outbox:
    """One client's ordered, byte-bounded send queue over its transport's `send` and `close`."""

    def __init__(
        self,
        send: SendFn,
        close: CloseFn,
        max_bytes: int,
        slow_timeout: float,
        metrics: DeliveryMetrics | None,
        peer: str,
        closed_errors: tuple[type[BaseException], ...],
    ) -> None:
        self._send = send
        self._close = close
        self.max_bytes = max_bytes
        self.slow_timeout = slow_timeout
        self.metrics = metrics
        self.peer = peer
        self.closed_errors = closed_errors
        self._queue: deque[_Item] = deque()
        self._drops: dict[str, int] = {}
        self.queued_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self._last_progress = time.monotonic()
        self._progress = asyncio.Event()  # set whenever the queue shrinks or the client goes: wakes `room`
        self.closed = False

    def push_batch(self, batch: Batch) -> None:
        """Send a live batch: straight to the socket when nothing is pending, else queued."""
        if self._writer is None and not self._queue:
            # The common case, inline: nothing pending, the shared frame goes to the socket.
            self._last_progress = time.monotonic()
            try:
                pending = self._send(batch.frame, batch.ws_frame)
            except self.closed_errors as exc:
                self._transport_failed(exc)
                return
            if self.metrics is not None:
                self.metrics.sent_now(batch.stream, batch.count, len(batch.frame), batch.lag)
            if pending is not None:
                self._await_pending(pending)
            return
        self.push_lines(batch.stream, batch.frame, batch.count, batch.last[0], batch.ws_frame)

    def push_control(self, data: bytes) -> None:
        """Queue a control frame (never dropped)."""
        self._push(_Item(data))

    def push_lines(
        self, stream: str, frame: bytes, count: int, published_ms: int, ws_frame: bytes | None = None
    ) -> None:
        self._push(_Item(frame, stream, count, published_ms, ws_frame=ws_frame))
        if self.queued_bytes > self.max_bytes:
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
            pending = self._send(data, item.ws_frame)
        except self.closed_errors as exc:
            self._transport_failed(exc)
            return None
        if self.metrics is not None and item.stream is not None:
            self.metrics.sent(item.stream, item.lines, len(data), item.published_ms)
        return pending

    def _transport_failed(self, exc: BaseException | None) -> None:
        # The handler's on_close cleans up the subscriptions; stop queueing meanwhile.
        log.info("send to %s failed: %s", self.peer, exc)
        self.detach()

    def detach(self) -> None:
        """The transport is gone: drop what is pending, wake whoever waits for `room`."""
        self.closed = True
        self._queue.clear()
        self.queued_bytes = 0
        self._progress.set()

    async def room(self, limit: int) -> None:
        """Wait until at most `limit` bytes are pending, or the client is gone."""
        while self.queued_bytes > limit and not self.closed:
            self._progress.clear()
            await self._progress.wait()

    def _shed(self) -> None:
        """Drop the oldest pending line frames until the queue fits, and say so.

        Control frames and the newest line frame always stay. One `dropped` notice per
        stream waits at the head of the queue (everything still queued is newer than what
        was dropped); its count grows with every shed until it is sent.
        """
        excess = self.queued_bytes - self.max_bytes
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
        self._progress.set()
        if time.monotonic() - self._last_progress > self.slow_timeout:
            self._close_slow()

    def _count_dropped(self, stream: str, count: int) -> None:
        if self.metrics is not None:
            self.metrics.dropped(stream, count)

    def note_dropped(self, stream: str, count: int) -> None:
        """Lines of `stream` were dropped before they reached this queue: count them, say so."""
        self._count_dropped(stream, count)
        self.push_control(encode({"type": "dropped", "stream": stream, "count": count}))

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
            self.metrics.slow_client_closed()
        self.close(CloseCode.TRY_AGAIN_LATER, "client too slow")

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
                self._progress.set()
                pending = self._transmit(item)
        except asyncio.CancelledError:
            raise
        except self.closed_errors as exc:
            self._transport_failed(exc)
        finally:
            self._writer = None

    def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.detach()
            self._close(code, reason)
