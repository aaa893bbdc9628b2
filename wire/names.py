"""Stream names and their validation, exactly as the contract (PROTOCOL.md, "Streams") states.

A name that breaks these rules is refused before anything else happens, so every other
module may assume a `StreamName` is safe to use in a Redis key, a log line or a Salt call.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from wire.filepolicy import MAX_PATH_BYTES, control_char, path_problem
from wire.text import has_lone_surrogate

TOPIC_RE = re.compile(r"[A-Za-z0-9._-]{1,249}")
MINION_RE = re.compile(r"[A-Za-z0-9._-]{1,253}")
# A minion glob (file:<glob>:<path>): minion id characters plus the wildcards * and ?, at
# least one of them. No [...] classes, nothing a shell or Salt's own targeting would read.
MINION_GLOB_RE = re.compile(r"[A-Za-z0-9._*?-]{1,253}")
# salt:<what>: a lowercase word naming a part of the Salt master's event bus (salt:jobs).
SALT_RE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
MAX_SUB_CHARS = 200
MAX_NAME_CHARS = 8 + 253 + 1 + MAX_PATH_BYTES
KINDS_ERROR = "stream must start with 'kafka:', 'file:' or 'salt:'"


class StreamNameError(ValueError):
    """A stream name that breaks the contract; the message says which rule."""


@dataclass(frozen=True, slots=True)
class StreamName:
    """A validated stream name, split into its parts.

    `kind` is ``"kafka"`` (with `topic` and optional `sub`), ``"file"`` (with `minion`
    and `path`) or ``"salt"`` (with `what`: the Salt master's events, published by the
    master's engine). `name` is the canonical string form used on the wire and in Redis keys.
    """

    name: str
    kind: str
    topic: str = ""
    sub: str = ""
    minion: str = ""
    path: str = ""
    what: str = ""

    def __str__(self) -> str:
        return self.name


def check_topic(topic: str) -> str:
    """Return `topic` if it is a valid Kafka topic name per the contract, else raise."""
    if not isinstance(topic, str) or not TOPIC_RE.fullmatch(topic):
        raise StreamNameError(f"topic must match [A-Za-z0-9._-]{{1,249}}: {topic!r:.80}")
    return topic


def check_sub(sub: str) -> str:
    """Return `sub` if it is a valid sub-stream name, else raise."""
    if not sub or len(sub) > MAX_SUB_CHARS:
        raise StreamNameError("sub-stream must be 1 to 200 characters")
    if sub.startswith("/"):
        raise StreamNameError("sub-stream must not start with '/'")
    if control_char(sub) or not sub.isprintable():
        raise StreamNameError("sub-stream must not contain control characters")
    return sub


def check_minion(minion: str) -> str:
    """Return `minion` if it is a valid minion id per the contract, else raise."""
    if not isinstance(minion, str) or not MINION_RE.fullmatch(minion):
        raise StreamNameError(f"minion id must match [A-Za-z0-9._-]{{1,253}}: {minion!r:.80}")
    return minion


def check_salt(what: str) -> str:
    """Return `what` if it names a salt stream (`salt:<what>`), else raise."""
    if not isinstance(what, str) or not SALT_RE.fullmatch(what):
        raise StreamNameError(f"a salt stream is salt:<what>, what matching [a-z][a-z0-9_-]{{0,63}}: {what!r:.80}")
    return what


def check_path(path: str) -> str:
    """Return `path` if it is absolute and already normal, else raise (the rules are
    wire.filepolicy.path_problem, shared with every file-path boundary)."""
    problem = path_problem(path)
    if problem is not None:
        raise StreamNameError(problem)
    return path


def parse_stream(name: object) -> StreamName:
    """Validate a stream name from any source and return its parts.

    Raises `StreamNameError` with a message fit to show the client.
    """
    if not isinstance(name, str) or not name:
        raise StreamNameError("stream must be a non-empty string")
    if len(name) > MAX_NAME_CHARS:
        raise StreamNameError("stream name too long")
    if has_lone_surrogate(name):
        raise StreamNameError("stream must be Unicode text: it holds a lone surrogate (U+D800-U+DFFF)")
    kind, sep, rest = name.partition(":")
    if not sep:
        raise StreamNameError(KINDS_ERROR)
    if kind == "kafka":
        topic, slash, sub = rest.partition("/")
        check_topic(topic)
        if slash:
            check_sub(sub)
        return StreamName(name=name, kind="kafka", topic=topic, sub=sub)
    if kind == "file":
        minion, colon, path = rest.partition(":")
        if not colon:
            raise StreamNameError("file stream must be file:<minion-id>:<absolute path>")
        check_minion(minion)
        check_path(path)
        return StreamName(name=name, kind="file", minion=minion, path=path)
    if kind == "salt":
        return StreamName(name=name, kind="salt", what=check_salt(rest))
    raise StreamNameError(KINDS_ERROR)


def kafka_stream(topic: str, sub: str = "") -> StreamName:
    """Build and validate the stream name for a topic, or one of its sub-streams."""
    return parse_stream(f"kafka:{topic}/{sub}" if sub else f"kafka:{topic}")


def file_stream(minion: str, path: str) -> StreamName:
    """Build and validate the stream name for a file on a minion."""
    return parse_stream(f"file:{minion}:{path}")


@dataclass(frozen=True, slots=True)
class FileGlob:
    """``file:<minion glob>:<path>``: one file on every minion whose id matches the glob.

    Not a stream: it names no Redis key and is never passed to Salt. A gateway expands it
    into the `StreamName`s of the matching minions (`member`), each checked on its own.
    """

    name: str
    minion_glob: str
    path: str
    kind: str = "file_glob"

    def matches(self, minion: str) -> bool:
        """Whether `minion` (a valid minion id) matches the glob (case-sensitive; * and ?)."""
        return fnmatch.fnmatchcase(minion, self.minion_glob)

    def member(self, minion: str) -> StreamName:
        """The file stream of this path on `minion`."""
        return file_stream(minion, self.path)

    def __str__(self) -> str:
        return self.name


def is_minion_glob(minion: str) -> bool:
    return "*" in minion or "?" in minion


def parse_selector(name: object) -> StreamName | FileGlob:
    """`parse_stream`, or a `FileGlob` for ``file:<minion glob>:<path>`` (what a client may
    subscribe to and unsubscribe from). Raises `StreamNameError`."""
    if isinstance(name, str) and name.startswith("file:"):
        minion, colon, path = name[5:].partition(":")
        if colon and is_minion_glob(minion):
            if len(name) > MAX_NAME_CHARS or has_lone_surrogate(name):
                return parse_stream(name)  # raises, with the same message as for a stream
            if not MINION_GLOB_RE.fullmatch(minion):
                raise StreamNameError(f"a minion glob is 1-253 of A-Z a-z 0-9 . _ - * ?: {minion!r:.80}")
            check_path(path)
            return FileGlob(name, minion, path)
    return parse_stream(name)


def salt_stream(what: str) -> StreamName:
    """Build and validate the stream name for a part of the Salt master's events."""
    return parse_stream(f"salt:{what}")
