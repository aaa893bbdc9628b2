"""What a caller may open: a token's stream patterns compiled into `Grants`.

A token's `streams` claim lists glob patterns (``fnmatch``, case-sensitive) over stream
names. A pattern names its kind literally: one that does not start with ``kafka:``,
``salt:`` or ``file:`` grants nothing, so ``*`` can never reach a file on a server.
``kafka:`` and ``salt:`` patterns match the whole name (``kafka:payments*`` also covers
the sub-streams ``kafka:payments/eu``; ``salt:*`` the Salt master's event streams).
``file:<minion glob>:<path glob>`` patterns match the minion id and the path separately,
so a ``*`` cannot stretch across the ``:`` between them; a ``file:`` pattern without that
second ``:`` is a minion glob covering every path (``file:*`` is every file the gateway's
allowlist lets through). Patterns are compiled once per token (cached), and checked once
per subscribe, never per line.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from functools import lru_cache

from gateway.access.identity import Identity
from wire.names import StreamName, StreamNameError, parse_stream

# Kinds whose patterns match the whole stream name; each pattern keeps its literal kind
# prefix, so a `kafka:` pattern can never match a `salt:` name or the reverse.
WHOLE_NAME_KINDS = ("kafka", "salt")
WHOLE_NAME_PREFIXES = tuple(f"{kind}:" for kind in WHOLE_NAME_KINDS)
PATTERN_PREFIXES = (*WHOLE_NAME_PREFIXES, "file:")


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


@dataclass(frozen=True, slots=True)
class Grants:
    """The streams one identity may open, compiled from its patterns."""

    kafka: tuple[re.Pattern[str], ...] = ()  # kafka: and salt: patterns (whole names)
    files: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = ()
    unrestricted: bool = False

    def allows(self, stream: StreamName) -> bool:
        """Whether `stream` (already validated) may be opened."""
        if self.unrestricted:
            return True
        if stream.kind in WHOLE_NAME_KINDS:
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
        if pattern.startswith(WHOLE_NAME_PREFIXES):
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
