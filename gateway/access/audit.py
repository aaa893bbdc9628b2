"""The audit trail of every access decision, and bearer tokens kept out of every log.

Every grant and refusal goes to the ``tailgate.audit`` logger as one JSON object per
line: when, which event, the decision, who (user, how authenticated, token id), from
where (the client address) and what (stream, minion), plus why when refused. Refusals
are written through `gateway.access.guard.Guard.refuse`, which also counts them.

Redaction works on what a query parameter's name *decodes* to, as the authenticator
reads it: ``?%74oken=`` is the token parameter too, and its value never reaches a log.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from gateway.access.identity import TOKEN_PARAMETERS, Identity

audit_log = logging.getLogger("tailgate.audit")

# A query parameter of a logged URL, still percent-encoded: separator, name, value.
QUERY_PARAMETER = re.compile(r"([?&;])([^=&;?#\s\"']+)=([^&;#\s\"']*)")
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
    """`text` with the value of every query parameter whose name decodes to a token
    parameter (``token``, ``%74oken``, ``TOKEN``...) replaced by ``<redacted>``."""
    return QUERY_PARAMETER.sub(_redact_parameter, text)


def _redact_parameter(match: re.Match[str]) -> str:
    separator, name, _ = match.groups()
    if _decoded(name) in TOKEN_PARAMETERS:
        return f"{separator}{name}=<redacted>"
    return match.group(0)


def _decoded(name: str) -> str:
    # Decoded until it stops changing, so a name encoded twice is caught as well;
    # compared in lower case: redacting a parameter the gateway ignores costs nothing.
    for _ in range(4):
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    return name.strip().lower()


class RedactTokens(logging.Filter):
    """Rewrites log records so a token in a logged URL's query never reaches the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message and "=" in message:
            redacted = redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


def install_redaction() -> None:
    """Put `RedactTokens` on Tornado's loggers (access log, uncaught exceptions); idempotent."""
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
