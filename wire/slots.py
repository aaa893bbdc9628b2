"""Redis Cluster hash slots: which slot a key is in, and a hash tag for every slot.

Standard library only (the tail agent ships `wire/`). In cluster mode every key of one
stream carries the stream's name as its hash tag (``{<stream>}``, wire/keys.py), so they
share a slot and one script call can touch them all. Keys that were global on one node
(the catalogue's `seen` and `counts`, the bridge's per-slot checkpoints) are split per
slot instead: one of each per slot, tagged with `slot_tag(slot)`, a short string whose
own hash slot is `slot`, so a publish call for the streams of one slot touches keys of
that slot only.

Invariant: ``key_slot("{" + slot_tag(s) + "}") == s`` for every slot s.
"""

from __future__ import annotations

import binascii
from functools import cache

SLOTS = 16384


def key_slot(key: str | bytes) -> int:
    """The cluster hash slot of `key`, by Redis's rule: CRC16 (XMODEM) of the hash tag
    (the text between the first '{' and the first '}' after it, if not empty) or of the
    whole key."""
    data = key.encode() if isinstance(key, str) else key
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return binascii.crc_hqx(data, 0) % SLOTS


@cache
def _tags() -> tuple[str, ...]:
    # The first base-36 counter value landing in each slot: about 160k CRCs, once per process.
    found: list[str | None] = [None] * SLOTS
    left = SLOTS
    n = 0
    while left:
        tag = _base36(n)
        slot = binascii.crc_hqx(tag.encode(), 0) % SLOTS
        if found[slot] is None:
            found[slot] = tag
            left -= 1
        n += 1
    return tuple(t for t in found if t is not None)


def slot_tag(slot: int) -> str:
    """A short string whose hash slot is `slot` (use it as a key's hash tag)."""
    return _tags()[slot]


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = digits[n % 36]
    while n >= 36:
        n //= 36
        out = digits[n % 36] + out
    return out
