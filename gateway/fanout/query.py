"""What history a subscription starts with, and whether it then goes live.

One `Query` per subscribe, built by the transport from the client's fields
(docs/PROTOCOL.md, `subscribe`): `backlog` (the last N lines), `since` (every line after an
id; a `from` time arrives here as the id just before its first millisecond: ids are
time-ordered), `until` (an exclusive upper bound: the query is finite, history only, and
ends with `complete`), `around` (a line and `context` lines either side, then
`complete`). Precedence: `around` stands alone; `since` wins over `backlog`.
`caught_up`: the client wants a `caught_up` frame where history ends and live begins.
"""

from __future__ import annotations

from dataclasses import dataclass

from wire.envelope import LineId

MAX_SEQ = 2**64 - 1  # the largest sequence part of a Redis Stream id


@dataclass(frozen=True, slots=True)
class Query:
    backlog: int = 0
    since: LineId | None = None
    epoch: str | None = None  # the epoch of the history `since` is from, if the client said it
    since_is_time: bool = False  # `since` came from `from`: a time asked for, not an id the client holds
    until: LineId | None = None
    around: LineId | None = None
    context: int = 0
    caught_up: bool = False  # send `caught_up` when history is over and live lines follow

    @property
    def finite(self) -> bool:
        """History only, ended by `complete`: no live lines, no hub membership."""
        return self.until is not None or self.around is not None


def id_before(line_id: LineId) -> LineId:
    """The largest id below `line_id` ((0, 0) for the smallest), so that "after it"
    means "from `line_id` on"."""
    ms, seq = line_id
    if seq > 0:
        return (ms, seq - 1)
    return (ms - 1, MAX_SEQ) if ms > 0 else (0, 0)


def time_id(ms: int) -> LineId:
    """The first id of millisecond `ms`."""
    return (ms, 0)
