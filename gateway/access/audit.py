"""The audit trail of every access decision, and bearer tokens kept out of every log.

Every grant and refusal goes to the ``tailgate.audit`` logger as one JSON object per
line: when, which event, the decision, who (user, how authenticated, token id), from
where (the client address) and what (stream, minion), plus why when refused. Refusals
are written through `gateway.access.guard.Guard.refuse`, which also counts them.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from gateway.access.identity import Identity

audit_log = logging.getLogger("tailgate.audit")

TOKEN_IN_URL = re.compile(r"([?&]token=)[^&\s#\"']*")
REDACTED_LOGGERS = ("tornado.access", "tornado.application", "tornado.general")


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
