"""What a caller may open, the audit trail of every decision, and secrets kept out of logs.

A token's `streams` claim lists glob patterns (``fnmatch``, case-sensitive) over stream
names. A pattern names its kind literally: one that does not start with ``kafka:`` or
``file:`` grants nothing, so ``*`` can never reach a file on a server. ``kafka:`` patterns
match the whole name (``kafka:payments*`` also covers the sub-streams
``kafka:payments/eu``). ``file:<minion glob>:<path glob>`` patterns match the minion id and
the path separately, so a ``*`` cannot stretch across the ``:`` between them; a ``file:``
pattern without that second ``:`` is a minion glob covering every path (``file:*`` is
every file the gateway's allowlist lets through). Patterns are compiled once
per token (cached), and checked once per subscribe, never per line.

Every grant and refusal goes to the ``tailgate.audit`` logger as one JSON object per
line: when, which event, the decision, who (user, how authenticated, token id), from
where (the client address) and what (stream, minion), plus why when refused.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from gateway.auth import Identity
from wire.names import StreamName, StreamNameError, parse_stream

audit_log = logging.getLogger("tailgate.audit")

TOKEN_IN_URL = re.compile(r"([?&]token=)[^&\s#\"']*")
REDACTED_LOGGERS = ("tornado.access", "tornado.application", "tornado.general")


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


@dataclass(frozen=True, slots=True)
class Grants:
    """The streams one identity may open, compiled from its patterns."""

    kafka: tuple[re.Pattern[str], ...] = ()
    files: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = ()
    unrestricted: bool = False

    def allows(self, stream: StreamName) -> bool:
        """Whether `stream` (already validated) may be opened."""
        if self.unrestricted:
            return True
        if stream.kind == "kafka":
            return any(p.match(stream.name) for p in self.kafka)
        if stream.kind == "file":
            return any(m.match(stream.minion) and p.match(stream.path) for m, p in self.files)
        return False

    def allows_name(self, name: str) -> bool:
        """`allows` for a name from anywhere; an invalid name is never allowed."""
        try:
            return self.allows(parse_stream(name))
        except StreamNameError:
            return False

    def may_see_minion(self, minion: str) -> bool:
        """Whether any file stream on `minion` could be allowed (the picker's minion list)."""
        if self.unrestricted:
            return True
        return any(m.match(minion) for m, _ in self.files)


@lru_cache(maxsize=1024)
def compile_grants(patterns: tuple[str, ...]) -> Grants:
    """Compile a token's `streams` patterns (cached: tokens of one user repeat)."""
    kafka, files = [], []
    for pattern in patterns:
        if pattern.startswith("kafka:"):
            kafka.append(_glob(pattern))
        elif pattern.startswith("file:"):
            minion, colon, path = pattern[5:].partition(":")
            files.append((_glob(minion), _glob(path if colon else "*")))
        # Anything else names no kind and grants nothing.
    return Grants(tuple(kafka), tuple(files))


UNRESTRICTED = Grants(unrestricted=True)


def grants_of(identity: Identity) -> Grants:
    """The compiled grants of an identity."""
    return UNRESTRICTED if identity.unrestricted else compile_grants(identity.streams)


def audit(event: str, decision: str, identity: Identity | None, address: str, **what: Any) -> None:
    """One structured audit line: `decision` is ``grant`` or ``refuse``."""
    record: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event": event,
        "decision": decision,
        "user": identity.user if identity is not None else None,
        "via": identity.via if identity is not None else None,
        "from": address,
    }
    if identity is not None and identity.token_id:
        record["jti"] = identity.token_id
    record.update({k: v for k, v in what.items() if v is not None})
    line = json.dumps(record, ensure_ascii=True, separators=(",", ":"))
    audit_log.log(logging.WARNING if decision == "refuse" else logging.INFO, "%s", line)


def redact(text: str) -> str:
    """`text` with every ``token=`` query value replaced."""
    return TOKEN_IN_URL.sub(r"\1<redacted>", text)


class RedactTokens(logging.Filter):
    """Rewrites log records so a ``?token=`` in a logged URL never reaches the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message:
            record.msg, record.args = redact(message), None
        return True


def install_redaction() -> None:
    """Put `RedactTokens` on Tornado's loggers (access log, uncaught exceptions); idempotent."""
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
