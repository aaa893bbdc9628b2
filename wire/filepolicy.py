"""Which file paths may be tailed: shell metacharacters refused, allowlist globs matched.

Shared by the gateway (before anything is asked of Salt), the Salt execution module and
the tail agent (each re-checks with the minion's own allowlist). Standard library only
and no imports from the rest of `wire`, so the execution module can load this one file
from the deployed agent directory without redis-py being importable by the minion.

Globs: ``**`` matches anything, across directories; ``*`` matches within one path
segment; ``?`` matches one character other than ``/``. ``/var/log/**`` therefore allows
every file below /var/log and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

# Characters a shell would treat specially, plus whitespace. A path holding one is never
# a log file we tail: it is refused outright, whatever any allowlist says.
SHELL_META = frozenset("|&;<>()$`\\\"'*?[]{}!~#")


def shell_meta(text: str) -> str | None:
    """The first shell metacharacter or whitespace character in `text`, else None."""
    for ch in text:
        if ch in SHELL_META or ch.isspace():
            return ch
    return None


@lru_cache(maxsize=256)
def glob_regex(glob: str) -> re.Pattern[str]:
    """Compile an allowlist glob into an anchored regular expression."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def allowed(path: str, globs: Iterable[str]) -> bool:
    """True when `path` matches at least one allowlist glob."""
    return any(glob_regex(g).fullmatch(path) for g in globs if isinstance(g, str) and g.startswith("/"))


def glob_base(glob: str) -> str:
    """The directory a glob's matches all live under (its segments before any wildcard)."""
    parts = glob.split("/")
    fixed: list[str] = []
    for part in parts[:-1]:
        if any(c in part for c in "*?"):
            break
        fixed.append(part)
    return "/".join(fixed) or "/"
