"""Several streams merged into one output ordered by the lines' times.

Each stream's lines arrive in id order; across streams the earliest buffered line is
printed first. A line waits while another stream may still deliver an older one:

* a stream still sending history (no `caught_up` yet, for at most `HISTORY_WAIT`
  seconds) holds everything back: its history may be older than anything buffered;
* a live stream with nothing buffered holds a line back for `window` seconds after it
  arrived (lines of several live streams published together arrive within that);
* a finished stream (`complete`) holds nothing back.

With one stream nothing waits. Lines with equal times keep the order the streams were
named in.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HISTORY_WAIT = 15.0

Emit = Callable[[str, dict[str, Any]], None]


@dataclass(slots=True)
class _Source:
    order: int
    buffer: deque[tuple[float, dict[str, Any]]] = field(default_factory=deque)  # (arrival, line)
    live: bool = False
    done: bool = False
    waiting_since: float = 0.0

    def holds_back(self, now: float) -> bool:
        """Whether this source, having nothing buffered, may still send an older line."""
        return not self.done and (self.live or now - self.waiting_since < HISTORY_WAIT)


class Merger:
    """Buffers lines per stream and hands them to `emit` in time order."""

    def __init__(self, emit: Emit, window: float) -> None:
        self.emit = emit
        self.window = window
        self.sources: dict[str, _Source] = {}

    def expect(self, stream: str, now: float | None = None) -> None:
        """A stream was (re)subscribed: until it catches up, it may send old lines."""
        source = self.sources.get(stream)
        if source is None:
            source = self.sources[stream] = _Source(len(self.sources))
        source.live, source.done = False, False
        source.waiting_since = time.monotonic() if now is None else now

    def forget(self, stream: str) -> None:
        """A placeholder replaced (a glob, once its members are known): it holds nothing back."""
        source = self.sources.pop(stream, None)
        if source is not None:
            for _, line in source.buffer:
                self.emit(stream, line)

    def add(self, stream: str, lines: list[dict[str, Any]], now: float | None = None) -> None:
        arrival = time.monotonic() if now is None else now
        self.sources[stream].buffer.extend((arrival, line) for line in lines)

    def live(self, stream: str) -> None:
        self.sources[stream].live = True

    def done(self, stream: str) -> None:
        self.sources[stream].done = True

    @property
    def finished(self) -> bool:
        return bool(self.sources) and all(s.done and not s.buffer for s in self.sources.values())

    def flush(self, now: float | None = None) -> None:
        """Emit every line no stream can still precede."""
        now = time.monotonic() if now is None else now
        alone = len(self.sources) == 1
        while True:
            heads = [(s.buffer[0][1].get("ts") or 0.0, s.order, name) for name, s in self.sources.items() if s.buffer]
            if not heads:
                return
            _, _, name = min(heads)
            head = self.sources[name]
            arrival, line = head.buffer[0]
            if not alone:
                for other in self.sources.values():
                    if other is head or other.buffer or not other.holds_back(now):
                        continue
                    if not other.live or now - arrival < self.window:
                        return
            head.buffer.popleft()
            self.emit(name, line)
