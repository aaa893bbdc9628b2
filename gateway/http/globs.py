"""Expanding a minion glob (``file:web-*:/var/log/nginx/error.log``) into the file streams
a subscribe opens: one per accepted minion whose id matches, that the caller may open.

The glob is matched here, against the master's accepted minion ids (`Minions`), and never
reaches Salt: what goes on is a list of validated minion ids (`wire.names.FileGlob.member`),
each then admitted like any file stream (allowlist, quotas) and its agent started with list
targeting. Minions the caller's grants do not cover are left out, as `/api/minions` leaves
them out of the picker; a glob that leaves nothing is refused (`not_found` when it matches
no minion the caller may see, `forbidden` when the path is not allowed on those it does).
"""

from __future__ import annotations

from typing import Protocol

from gateway.access.grants import Grants
from gateway.tails.salt import SaltFailure
from wire.codes import ErrorCode, ProtocolError
from wire.names import FileGlob, StreamNameError


class MinionList(Protocol):
    """The accepted minion ids (gateway.tails.minions.Minions provides it)."""

    async def list(self) -> list[str]: ...


class Globs:
    """One connection's subscribed minion globs and their member streams."""

    def __init__(self, minions: MinionList | None, limit: int) -> None:
        self.minions = minions
        self.limit = limit
        self.members: dict[str, list[str]] = {}

    async def expand(self, glob: FileGlob, grants: Grants) -> list[str]:
        return await expand(glob, self.minions, grants, self.limit)

    def replace(self, name: str, streams: list[str]) -> list[str]:
        """Remember `name`'s members; the previous members it no longer has (to unsubscribe)."""
        before = self.members.get(name, [])
        self.members[name] = streams
        return [stream for stream in before if stream not in streams]

    def pop(self, name: str) -> list[str]:
        return self.members.pop(name, [])


async def expand(glob: FileGlob, minions: MinionList | None, grants: Grants, limit: int) -> list[str]:
    """The member streams of `glob` for a caller with `grants`, or `ProtocolError`."""
    name = glob.name
    if minions is None:
        raise ProtocolError(ErrorCode.UNAVAILABLE, "file streams are off on this gateway (salt.mode: off)", name)
    try:
        ids = await minions.list()
    except SaltFailure as exc:
        raise ProtocolError(
            ErrorCode.UNAVAILABLE, f"cannot list the Salt master's minions: {exc.message}", name
        ) from None
    if not grants.unrestricted and not grants.files:
        raise ProtocolError(ErrorCode.FORBIDDEN, "you may not open file streams", name)
    # Only minions the caller may see count, so a refusal never tells of others (as /api/minions).
    visible = [minion for minion in ids if glob.matches(minion) and grants.may_see_minion(minion)]
    if not visible:
        why = f"no minion you may open matches {glob.minion_glob!r}"
        raise ProtocolError(ErrorCode.NOT_FOUND, why, name)
    members = []
    for minion in visible:
        try:
            stream = glob.member(minion)
        except StreamNameError:
            continue  # an accepted key whose id the contract does not allow: never a stream
        if grants.allows(stream):
            members.append(stream.name)
    if not members:
        raise ProtocolError(ErrorCode.FORBIDDEN, f"you may not open {glob.path} on the minions matching it", name)
    if len(members) > limit:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"{len(members)} minions match; one glob opens at most {limit} (gateway.max_glob_minions)",
            name,
            "glob_minions",
        )
    return members
