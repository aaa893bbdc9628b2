"""Lines as Redis stores them, read for the hub and for history reads.

The gateway's own defence of the canonical text rule (wire/text.py), for lines an older
or foreign producer stored: a lone surrogate, NaN or Infinity is rewritten on the way
out; a line that cannot be read at all (not JSON, nested deeper than the parser goes)
reaches viewers as a notice under its own id (wire.envelope.read_line). Either is
counted and logged once per stream, never passed on as it is nor dropped unsaid.
A history epoch that is not one (a key written by hand) is read as no epoch, logged.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from wire.envelope import read_line, read_lines
from wire.epoch import EPOCH_RE, epoch_of

log = logging.getLogger(__name__)


class RepairMetrics(Protocol):
    """Where repaired lines are counted (gateway.metrics.GatewayMetrics provides it)."""

    def lines_repaired(self, how: str, lines: int) -> None: ...


class StoredLines:
    """Reads stored lines into canonical line objects, counting what it had to repair."""

    def __init__(self, metrics: RepairMetrics | None = None) -> None:
        self.metrics = metrics
        self._logged: set[tuple[str, str]] = set()

    def array(self, stream: str, array: bytes, clean: bool = False) -> tuple[list[dict[str, Any]], bool]:
        """The lines of a live channel message's JSON array (`clean`: see `read_lines`),
        and whether any had to be repaired (so the array must be encoded again)."""
        lines, rewritten, unreadable = read_lines(array, clean)
        if rewritten:
            self._note(stream, "rewritten", rewritten)
        if unreadable:
            self._note(stream, "unreadable", unreadable)
        return lines, bool(rewritten or unreadable)

    def entry(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
        """One history entry."""
        line, how = read_line(entry_id, fields.get(b"d"))
        if how:
            self._note(stream, how, 1)
        return line

    def epoch(self, stream: str, value: str | None) -> str | None:
        """A live message's epoch (`LiveMessage.epoch`), or None when it is not a valid one:
        it goes into frames as it is, so it must be plain JSON text."""
        if value is None or EPOCH_RE.fullmatch(value):
            return value
        self._bad_epoch(stream, value)
        return None

    def history_epoch(self, stream: str, exists: object, value: object) -> str | None:
        """A history's epoch from the replies to `wire.epoch.queue_read` (see `epoch_of`);
        None, as for a history without one, when the key holds no valid epoch."""
        try:
            return epoch_of(exists, value)
        except ValueError:
            self._bad_epoch(stream, value)
            return None

    def _bad_epoch(self, stream: str, value: object) -> None:
        if (stream, "epoch") not in self._logged:
            self._logged.add((stream, "epoch"))
            log.warning(
                "%s: the history's epoch %.60r is not an epoch; read as none (said once per stream)", stream, value
            )

    def _note(self, stream: str, how: str, lines: int) -> None:
        if self.metrics is not None:
            self.metrics.lines_repaired(how, lines)
        if (stream, how) not in self._logged:
            self._logged.add((stream, how))
            what = "made canonical" if how == "rewritten" else "unreadable, sent as a notice"
            log.warning(
                "%s: %d stored lines %s (an older or foreign producer wrote them); said once per stream",
                stream,
                lines,
                what,
            )
