"""Which file paths may be tailed: the one policy every trust boundary applies.

`refusal(path, globs, resolve=...)` composes the rules, in this order, and says which
one refused the path:

1. the contract's path rules (PROTOCOL.md, "Streams"): absolute, normal (no ``//``, no
   ``.`` or ``..`` segment), no NUL or control character, at most 4096 bytes;
2. no shell metacharacter or whitespace, whatever any allowlist says;
3. inside the allowlist globs, as given;
4. with ``resolve=True`` (only where the file lives: the execution module and the agent
   on the minion), inside them again once symlinks are resolved (``os.path.realpath``).

Where the file lives, a name checked is not yet a file opened: a link can be planted
between the two. `open_checked(path, globs)` is how the minion opens a file: rules 1 to
4, then the file is reached without being opened (``O_PATH``, so neither a FIFO nor a
device is ever opened), refused unless it is a regular file whose real path (the
descriptor's, from ``/proc/self/fd``) the allowlist permits, and only then opened for
reading, through that very descriptor. Whatever the name points at a moment later, the
bytes read are those of the file checked.

It is called at every boundary: the gateway's admission (its own allowlist, not resolved:
the file is on the minion), its Salt client (rules 1 and 2 only), the Salt execution
module and the tail agent (the minion's allowlist, resolved, through `open_checked`
wherever they reach the file itself). Checking at each boundary is deliberate; the rules
are written here once. `wire.names.check_path` applies rule 1 through `path_problem`.

Standard library only and no imports from the rest of `wire`, so the execution module can
load this one file from the deployed agent directory without redis-py being importable by
the minion.

Globs: ``**`` matches anything, across directories; ``*`` matches within one path
segment; ``?`` matches one character other than ``/``. ``/var/log/**`` therefore allows
every file below /var/log and nothing else.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

MAX_PATH_BYTES = 4096

# Characters a shell would treat specially, plus whitespace. A path holding one is never
# a log file we tail: it is refused outright, whatever any allowlist says.
SHELL_META = frozenset("|&;<>()$`\\\"'*?[]{}!~#")

# Which rule refused a path (Refusal.rule).
PATH = "path"  # breaks the contract's path rules
SHELL = "shell"  # holds a shell metacharacter or whitespace
ALLOWLIST = "allowlist"  # outside the allowlist as given
SYMLINK = "symlink"  # inside as given, outside once symlinks are resolved
SPECIAL = "special"  # not a regular file (a FIFO, a device, a directory)
UNVERIFIED = "unverified"  # where the opened file really is cannot be told (no /proc)


class Refusal(NamedTuple):
    """Why a path is refused: the rule (PATH, SHELL, ALLOWLIST, SYMLINK) and a message fit
    to show the caller."""

    rule: str
    message: str

    @property
    def outside(self) -> bool:
        """True when the allowlist refused it (forbidden), False when the path itself is
        unacceptable (a bad request)."""
        return self.rule in (ALLOWLIST, SYMLINK)

    @property
    def code(self) -> str:
        """The logtail execution module's error code for it: ``not_allowed`` (outside the
        allowlist), ``unreadable`` (not a file it can check and read) or ``refused``."""
        if self.outside:
            return "not_allowed"
        return "unreadable" if self.rule in (SPECIAL, UNVERIFIED) else "refused"


class Refused(Exception):
    """`open_checked` refused the file; `refusal` says why."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def refusal(
    path: object, globs: Iterable[str] | None, *, resolve: bool = True, allowlist: str = "the allowlist"
) -> Refusal | None:
    """Why `path` may not be tailed here, or None when it may.

    `globs` is this boundary's allowlist; None means the boundary checks no allowlist
    (the gateway's Salt client, and stopping an agent: rules 1 and 2 only). `resolve`
    also checks the path with its symlinks resolved, which only the host holding the
    file can do. `allowlist` names the allowlist in messages ("this minion's
    allowlist").
    """
    if not isinstance(path, str):
        return Refusal(PATH, "path must be a string")
    problem = path_problem(path)
    if problem is not None:
        return Refusal(PATH, problem)
    bad = shell_meta(path)
    if bad is not None:
        return Refusal(SHELL, f"path contains the shell metacharacter {bad!r}")
    if globs is None:
        return None
    globs = list(globs)
    if not allowed(path, globs):
        return Refusal(ALLOWLIST, f"{path} is outside {allowlist}")
    if resolve:
        real = os.path.realpath(path)
        if real != path and not allowed(real, globs):
            return Refusal(SYMLINK, f"{path} resolves to {real}, outside {allowlist}")
    return None


def open_checked(path: str, globs: Iterable[str], *, allowlist: str = "the allowlist") -> int:
    """A read-only descriptor of the regular file `path` reaches, checked as a whole.

    Raises `Refused` when the policy refuses `path` or the file it reaches (see the module
    docstring), and `OSError` when it cannot be reached (`FileNotFoundError`: not there).
    """
    globs = list(globs)
    refused = refusal(path, globs, allowlist=allowlist)
    if refused is not None:
        raise Refused(refused)
    handle = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise Refused(Refusal(SPECIAL, f"{path} is not a regular file"))
        try:
            real = os.readlink(f"/proc/self/fd/{handle}")
        except OSError as exc:
            raise Refused(Refusal(UNVERIFIED, f"cannot tell where {path} leads: {exc.strerror}")) from None
        if not allowed(real, globs):
            raise Refused(Refusal(SYMLINK, f"{path} led to {real} when opened, outside {allowlist}"))
        # Reopening the checked descriptor, never the name, reads the very file checked.
        return os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    finally:
        os.close(handle)


def control_char(text: str) -> bool:
    """True when `text` holds a C0 or C1 control character (or DEL)."""
    return any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in text)


def path_problem(path: str) -> str | None:
    """What breaks the contract's path rules in `path` (absolute and already normal), or None."""
    if not isinstance(path, str) or not path.startswith("/"):
        return "path must be absolute"
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return "path must be at most 4096 bytes"
    if "\x00" in path or control_char(path):
        return "path must not contain NUL or control characters"
    if "//" in path:
        return "path must not contain '//'"
    if any(seg in (".", "..") for seg in path.split("/")[1:]):
        return "path must not contain '.' or '..' segments"
    if path != "/" and path.endswith("/"):
        return "path must name a file, not end with '/'"
    return None


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
