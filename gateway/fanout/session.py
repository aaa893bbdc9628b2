"""One client's view: its subscriptions and their cursors, in front of its `Outbox`.

Everything a client receives goes through `Session`, which enforces the contract's
guarantee per stream: strictly increasing ids, no duplicates, and anything missed is
announced (`dropped`, `gap`). Live batches arriving while a subscription catches up from
history are held and trimmed by id when it goes live, so the switch neither loses nor
repeats a line. History arrives a page at a time (`history`), each sent at once, and the
reader waits for `room` in the outbox before the next, so a client that reads gets all of
it and memory stays bounded. Backpressure (shedding, slow clients) is the outbox's
(fanout/outbox.py).

Each subscription also keeps the epoch of the history its cursor is from (wire/epoch.py),
told by every history page and every live batch. A live batch of another epoch than a
known one means the history was created again under a live subscription: the client is
told `gap` (reason `reset`) once, and the cursor starts again in the new history, as it
does after a history page with a `reset` or `behind` gap (`Page.rewind`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.fanout.frames import encode, lines_frame
from gateway.fanout.history import START, Page
from gateway.fanout.hub import Batch
from gateway.fanout.outbox import CloseFn, DeliveryMetrics, Outbox, SendFn
from wire.codes import GapReason
from wire.envelope import LineId, format_id, parse_id

HISTORY_FRAME_LINES = 500


@dataclass(slots=True)
class _Sub:
    cursor: LineId | None = None  # the newest id this client has, or is known to need not
    start: LineId | None = None  # where a live-only subscription began, to resume from
    epoch: str | None = None  # the epoch of the history `cursor` (or `start`) is from; None: not known
    catching_up: bool = True
    held: list[Batch] = field(default_factory=list)
    held_bytes: int = 0
    generation: int = 0
    tell_caught_up: bool = False  # the client asked for `caught_up` frames


class Session:
    """A client session, independent of the transport (tests drive it directly)."""

    def __init__(
        self,
        send: SendFn,
        close: CloseFn,
        max_queue_bytes: int,
        slow_timeout: float,
        metrics: DeliveryMetrics | None = None,
        peer: str = "",
        closed_errors: tuple[type[BaseException], ...] = (OSError,),
    ) -> None:
        self.max_queue_bytes = max_queue_bytes
        self.peer = peer
        self.subs: dict[str, _Sub] = {}
        self._generations = 0  # one counter for every stream: a replaced subscription's number never comes back
        self.outbox = Outbox(send, close, max_queue_bytes, slow_timeout, metrics, peer, closed_errors)

    # Subscription lifecycle -------------------------------------------------------

    def begin(
        self, stream: str, cursor: LineId | None = None, epoch: str | None = None, caught_up: bool = False
    ) -> int:
        """Start (or restart) catching up on `stream`; live batches are held meanwhile.
        `cursor` and `epoch`: what a client resuming with `since` holds. `caught_up`: a new
        subscription whose client wants a `caught_up` frame each time it goes live.

        Returns a generation number that `history` and `finish` must present, so a
        catch-up that a newer subscribe or a reconnect superseded is ignored.
        """
        sub = self.subs.get(stream)
        if sub is None:
            sub = self.subs[stream] = _Sub(cursor=cursor, epoch=epoch, tell_caught_up=caught_up)
        else:
            sub.catching_up, sub.held, sub.held_bytes = True, [], 0
            if cursor is not None:
                sub.cursor, sub.epoch = cursor, epoch
        self._generations += 1
        sub.generation = self._generations
        return sub.generation

    def catching_up(self, stream: str, generation: int) -> bool:
        """Whether this catch-up of `stream` is still the one wanted (not superseded, client here)."""
        sub = self.subs.get(stream)
        return sub is not None and sub.generation == generation and sub.catching_up and not self.closed

    def resume_point(self, stream: str) -> tuple[LineId, str | None]:
        """The id after which this client needs every line of `stream`, and the epoch of
        the history that id is from (None: not known)."""
        sub = self.subs.get(stream)
        if sub is None:
            return START, None
        return sub.cursor or sub.start or START, sub.epoch

    def history(self, stream: str, generation: int, page: Page) -> bool:
        """Send a page of a catch-up: `gap` first if lines are missing before it, then its
        lines the client does not have yet. False when the catch-up is no longer wanted
        (stop reading)."""
        if not self.catching_up(stream, generation):
            return False
        sub = self.subs[stream]
        if page.gap is not None:
            self.gap(stream, page.gap)
        if page.rewind is not None:
            sub.cursor, sub.start = page.rewind, None
        sub.epoch = page.epoch
        cursor = sub.cursor
        fresh = [line for line in page.lines if cursor is None or parse_id(line["id"]) > cursor]
        for i in range(0, len(fresh), HISTORY_FRAME_LINES):
            chunk = fresh[i : i + HISTORY_FRAME_LINES]
            self.outbox.push_lines(stream, lines_frame(stream, chunk, page.epoch), len(chunk), 0)
        if fresh:
            sub.cursor = parse_id(fresh[-1]["id"])
        return True

    async def room(self) -> None:
        """Wait until the outbox is at most half full (or the client is gone): what a history
        reader does between pages."""
        await self.outbox.room(self.max_queue_bytes // 2)

    def finish(self, stream: str, generation: int, head: LineId | None = None, start: LineId | None = None) -> None:
        """End a catch-up (its history already sent): release the held live lines newer than
        what the client has.

        `head` is the newest id in history when a backlog was read: every line up to it was
        considered, so later copies are skipped. A live-only subscription passes no head
        (its held lines are all new to the client, whatever the order in which Redis
        answered) but a `start`, the point a reconnect resumes from if nothing arrived."""
        if not self.catching_up(stream, generation):
            return
        sub = self.subs[stream]
        if head is not None and (sub.cursor is None or head > sub.cursor):
            sub.cursor = head
        if start is not None:
            sub.start = start
        sub.catching_up = False
        if sub.tell_caught_up:
            # Before the held lines: what follows is live, and `after` is where to resume
            # from when nothing more arrives (a client merging streams by time waits for it).
            frame = {"type": "caught_up", "stream": stream, "after": format_id(sub.cursor or sub.start or START)}
            if sub.epoch is not None:
                frame["epoch"] = sub.epoch  # (resume with since = after and this epoch)
            self.control(frame)
        held, sub.held, sub.held_bytes = sub.held, [], 0
        for batch in held:
            self.deliver(batch)

    def complete(self, stream: str, generation: int) -> None:
        """End a finite query (its history already sent): `complete`, and the subscription
        is gone."""
        if self.catching_up(stream, generation):
            self.control({"type": "complete", "stream": stream})
            self.forget(stream)

    def forget(self, stream: str) -> None:
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
                self.outbox.note_dropped(batch.stream, old.count)
            return
        if batch.epoch is not None and batch.epoch != sub.epoch:
            if sub.epoch is not None:
                # The history was created again under this live subscription (FLUSHALL, a restart).
                self.gap(batch.stream, GapReason.RESET)
                sub.cursor, sub.start = START, None
            sub.epoch = batch.epoch
        if sub.cursor is not None and batch.first <= sub.cursor:
            trimmed = batch.after(sub.cursor)
            if trimmed is None:
                return
            batch = trimmed
        sub.cursor = batch.last
        self.outbox.push_batch(batch)

    def gap(self, stream: str, reason: GapReason) -> None:
        """Tell the client lines of `stream` may be missing just before its next ones."""
        self.control({"type": "gap", "stream": stream, "reason": reason})

    def control(self, obj: dict[str, Any]) -> None:
        """Queue a control frame (never dropped)."""
        self.outbox.push_control(encode(obj))

    def send_raw(self, data: bytes) -> None:
        self.outbox.push_control(data)

    def check_stalled(self) -> None:
        """Close the client if it has made no progress for too long (periodic sweep)."""
        self.outbox.check_stalled()

    @property
    def queued_bytes(self) -> int:
        return self.outbox.queued_bytes

    @property
    def closed(self) -> bool:
        return self.outbox.closed

    def detach(self) -> None:
        """The transport is gone: send nothing more (its handler cleans up the subscriptions)."""
        self.outbox.detach()

    def close(self, code: int, reason: str) -> None:
        self.outbox.close(code, reason)
