"""The hub: which clients watch which stream, and fan-out of live batches to them.

Pure core, no I/O. The Redis reader hands each channel message to `Hub.dispatch`, which
filters the batch once per distinct filter, encodes one frame per filter and gives the
same bytes to every member of that group. `add` and `remove` report a stream's first
viewer and last viewer, so the I/O shell issues SUBSCRIBE/UNSUBSCRIBE only then; after a
Redis reconnect, `streams()` is the truth to resubscribe from.

A batch is forwarded as Redis holds it, unparsed, unless it may break the canonical text
rule (wire.envelope.may_break_rule: an older producer's lone surrogate or NaN): then it
is read through `StoredLines` and re-encoded before anyone gets it.

Every batch carries the epoch of the history its lines belong to, from the message
headers (wire.epoch; None from a producer older than epochs), and its frame says it
(`"epoch"`): messages of two epochs are never merged into one batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.fanout.filters import FilterKey, LineFilter
from gateway.fanout.frames import lines_frame, lines_prefix, ws_text_frame
from gateway.fanout.lag import lag_of
from gateway.fanout.stored import StoredLines
from wire.envelope import UNREADABLE_META, LineId, LiveMessage, frame_ids, may_break_rule, parse_id, read_lines
from wire.text import dumpb

log = logging.getLogger(__name__)

MERGE_BYTES = 256 * 1024


@dataclass(slots=True)
class Batch:
    """Lines of one stream for one filter group, encoded once, shared by its members.

    `first` and `last` are the ids of the first and last line in `frame`. `lines` (the
    parsed lines) is filled lazily, only when a member needs to trim the batch. `epoch`
    is the epoch of the history the lines are from (None: their producer did not say).
    """

    stream: str
    first: LineId
    last: LineId
    count: int
    frame: bytes
    _lines: list[dict[str, Any]] | None = None
    _ws_frame: bytes | None = None
    _lag: tuple[int, float] | None = None
    epoch: str | None = None

    @property
    def lag(self) -> tuple[int, float]:
        """Publish-to-send lag of this batch sent now, computed once: every client whose
        socket takes it at once gets it at the same moment."""
        if self._lag is None:
            self._lag = lag_of(self.last[0])
        return self._lag

    @property
    def ws_frame(self) -> bytes:
        """The frame as WebSocket bytes, built once for every client that gets it."""
        if self._ws_frame is None:
            self._ws_frame = ws_text_frame(self.frame)
        return self._ws_frame

    @property
    def lines(self) -> list[dict[str, Any]]:
        if self._lines is None:
            # the frame's array starts after the first ',"lines":', which the (JSON-quoted)
            # stream name before it cannot hold; a batch parsed for repair came with its lines
            self._lines = read_lines(self.frame[self.frame.index(b',"lines":') + 9 : -1], clean=True)[0]
        return self._lines

    def after(self, cursor: LineId) -> Batch | None:
        """This batch without the lines at or before `cursor` (None when nothing is left)."""
        if self.first > cursor:
            return self
        if self.last <= cursor:
            return None
        kept = [line for line in self.lines if parse_id(line["id"]) > cursor]
        frame = lines_frame(self.stream, kept, self.epoch)
        return Batch(self.stream, parse_id(kept[0]["id"]), self.last, len(kept), frame, kept, epoch=self.epoch)


class Member(Protocol):
    """What the hub needs of a client session."""

    def deliver(self, batch: Batch) -> None: ...


@dataclass(slots=True)
class _Group:
    filter: LineFilter
    members: set[Member] = field(default_factory=set)


@dataclass(slots=True)
class _Channel:
    prefix: bytes
    epoch: str | None = None  # the epoch `prefix` says
    groups: dict[FilterKey, _Group] = field(default_factory=dict)
    member_filter: dict[Member, FilterKey] = field(default_factory=dict)


class Hub:
    """Maps each stream to its viewers grouped by filter; fans batches out."""

    def __init__(self, stored: StoredLines | None = None) -> None:
        self._channels: dict[str, _Channel] = {}
        self.stored = stored or StoredLines()
        self.lines_in = 0
        self.lines_filtered = 0  # lines tested against a filter: once per distinct filter, whatever its viewers

    def add(self, stream: str, member: Member, line_filter: LineFilter) -> bool:
        """Add or re-filter a viewer; True when this is the stream's first viewer."""
        channel = self._channels.get(stream)
        first = channel is None
        if channel is None:
            channel = self._channels[stream] = _Channel(lines_prefix(stream))
        self._leave_group(channel, member)
        group = channel.groups.get(line_filter.key)
        if group is None:
            group = channel.groups[line_filter.key] = _Group(line_filter)
        group.members.add(member)
        channel.member_filter[member] = line_filter.key
        return first

    def remove(self, stream: str, member: Member) -> bool:
        """Remove a viewer; True when it was the stream's last viewer."""
        channel = self._channels.get(stream)
        if channel is None or member not in channel.member_filter:
            return False
        self._leave_group(channel, member)
        if channel.member_filter:
            return False
        del self._channels[stream]
        return True

    @staticmethod
    def _leave_group(channel: _Channel, member: Member) -> None:
        key = channel.member_filter.pop(member, None)
        if key is None:
            return
        group = channel.groups[key]
        group.members.discard(member)
        if not group.members:
            del channel.groups[key]

    def streams(self) -> list[str]:
        """Every stream with at least one viewer."""
        return list(self._channels)

    def members(self, stream: str) -> Iterable[Member]:
        channel = self._channels.get(stream)
        return list(channel.member_filter) if channel else []

    def viewers(self) -> dict[str, int]:
        """Viewers per stream, for metrics."""
        return {stream: len(ch.member_filter) for stream, ch in self._channels.items()}

    def dispatch(self, stream: str, messages: list[bytes]) -> None:
        """Fan live channel messages of one stream out to its viewers.

        The reader passes every message gathered since its last hand-off; consecutive
        messages are merged into batches of up to MERGE_BYTES, so frames per client shrink
        when streams publish small batches or the gateway falls behind, without a burst
        ever becoming one frame too big for a browser (or a client queue) to take.
        """
        channel = self._channels.get(stream)
        if channel is None:
            return
        run: list[LiveMessage] = []
        size = 0
        for message in messages:
            try:
                part = frame_ids(message)
            except ValueError:
                log.error("malformed live message on %s (%d bytes); skipped", stream, len(message))
                continue
            # never merge across a history epoch change: a batch belongs to one history
            if run and (size + len(part[3]) > MERGE_BYTES or part.epoch != run[0].epoch):
                self._fan_out(stream, channel, run)
                run, size = [], 0
            run.append(part)
            size += len(part[3])
        if run:
            self._fan_out(stream, channel, run)

    def _fan_out(self, stream: str, channel: _Channel, parts: list[LiveMessage]) -> None:
        first, last, count, array, epoch = parts[0]
        if epoch != channel.epoch:
            epoch = self.stored.epoch(stream, epoch)  # checked once per change: frames carry it as it is
            if epoch != channel.epoch:
                channel.prefix, channel.epoch = lines_prefix(stream, epoch), epoch
        epoch = channel.epoch  # one object for every batch of an epoch: sessions compare it at once
        if len(parts) > 1:
            last = parts[-1][1]
            count = sum(p[2] for p in parts)
            array = b"[" + b",".join(p[3][1:-1] for p in parts) + b"]"
        self.lines_in += count
        parsed: list[dict[str, Any]] | None = None
        clean = not may_break_rule(array)
        if not clean:
            parsed, repaired = self.stored.array(stream, array)
            if repaired:
                array = dumpb(parsed)
        for group in list(channel.groups.values()):
            if group.filter.passes_all:
                batch = Batch(stream, first, last, count, channel.prefix + array + b"}", parsed, epoch=epoch)
            else:
                if parsed is None:
                    parsed = self.stored.array(stream, array, clean)[0]
                match = group.filter.match
                assert match is not None  # (not passes_all)
                # a notice for an unreadable line passes every filter: that line might have matched
                self.lines_filtered += len(parsed)
                kept = [line for line in parsed if match(line) or line.get("meta") is UNREADABLE_META]
                if not kept:
                    continue
                batch = Batch(
                    stream,
                    parse_id(kept[0]["id"]),
                    parse_id(kept[-1]["id"]),
                    len(kept),
                    lines_frame(stream, kept, epoch),
                    kept,
                    epoch=epoch,
                )
            for member in list(group.members):
                member.deliver(batch)
