"""`--from` and `--until` values as the contract's subscribe fields.

Accepted: a duration back from now (`90s`, `10m`, `2h`, `1d`, `1h30m`), ISO 8601 text
(`2026-11-30T10:00:00Z`; without an offset, UTC), epoch seconds (`1764496800`), `now`;
and for `--from` a line id (`1764496800000-0`: every line after it).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from tailgate.errors import CliError, Exit

DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
LINE_ID = re.compile(r"\d{1,20}-\d{1,20}")
UNITS = (86400, 3600, 60, 1)


def when(flag: str, text: str, now: float | None = None) -> float | str:
    """Epoch seconds or ISO 8601 text for `text`, or a usage error naming `flag`."""
    now = time.time() if now is None else now
    text = text.strip()
    if text == "now":
        return now
    duration = DURATION.fullmatch(text)
    if text and duration and any(duration.groups()):
        return now - sum(int(n or 0) * unit for n, unit in zip(duration.groups(), UNITS, strict=True))
    try:
        return float(text)
    except ValueError:
        pass
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise CliError(
            Exit.USAGE, f"{flag} {text!r}: give a duration (10m, 2h), an ISO 8601 time, epoch seconds or now"
        ) from None
    return text


def start_fields(text: str | None, now: float | None = None) -> dict[str, Any]:
    """The subscribe fields for `--from`: `since` for a line id, else `from`."""
    if text is None:
        return {}
    if LINE_ID.fullmatch(text.strip()):
        return {"since": text.strip()}
    return {"from": when("--from", text, now)}


def as_seconds(value: float | str) -> float:
    """A `when` result as epoch seconds (to compare two of them)."""
    if isinstance(value, float):
        return value
    parsed = datetime.fromisoformat(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
