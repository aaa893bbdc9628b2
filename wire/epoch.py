"""A stream's history epoch: which incarnation of its history a line id belongs to.

Line ids (``<ms>-<seq>``) are only comparable within one history. When Redis loses a
history (a restart without persistence, FLUSHALL, eviction of the key, a failover to a
replica that never had it) the next publish creates a new one whose ids, taken from the
clock, are again larger than every id a client holds: a ``since`` from before the loss
would resume in the new history as if nothing were missing. The epoch tells them apart.

The design (the contract is docs/PROTOCOL.md, "Redis layout" and "The publish step"):

* The epoch is a string key next to the history, ``Keys.epoch(stream)``, holding 1 to 32
  characters from ``[0-9a-z]`` (the publish step writes 17 hex digits: Redis's clock in
  seconds and microseconds, then 16 random bits). Clients treat it as opaque and compare
  it for equality only.
* The publish step (wire/lua/publish.lua) reads it before the first XADD of each stream
  in every call and makes a new one, in the same atomic step, whenever the history does
  not exist (the XADD is about to create it) or the epoch key is missing. So a history
  and its epoch are born together, and the epoch never changes while the history lives.
  Cost on the hot path: one GET and one EXISTS per stream per call, none per line.
* Every live message carries it in its header (`wire.envelope.frame_ids`), so the
  gateway stamps live frames without reading it; history reads get it from
  `queue_read` + `epoch_of`, queued in the same MULTI as the XINFO/XRANGE.

Why a key of its own rather than a value inside the stream (a field on every entry, or a
consumer group's name): a field per entry costs memory and work per line; a group's name
is a hack visible to every tool that lists groups. The price is that Redis can evict the
two keys independently (only under an ``allkeys-*`` policy: neither has a TTL, and every publish
touches both, so under LRU or LFU neither goes cold without the other). Both directions are safe:

* the history evicted, the epoch kept: the next publish finds no history and makes a new
  epoch; until then `epoch_of` answers None ("no history now") even though the epoch
  key still holds the old value, because it reads the history's existence with it;
* the epoch evicted, the history kept: `epoch_of` answers None and the next publish makes
  a new epoch. A client is then told of a loss that did not happen (a spurious ``gap``),
  which is the direction a log viewer can afford; the other direction never happens.

Invariants: a loss of the history is never hidden; an epoch never changes while its
history and its key both live. Not covered: a failover to a replica that had the history
but was behind, and a restore from an older snapshot, keep the epoch while losing the
newest lines (the gateway can see those by the client's cursor being newer than the
history's last id, or missing from it).
"""

from __future__ import annotations

import re
from typing import Protocol

import redis

from wire.keys import Keys

EPOCH_RE = re.compile(r"[0-9a-z]{1,32}")

# replies `queue_read` adds to a pipeline, in order: EXISTS <hist>, GET <epoch>
READ_REPLIES = 2


class CommandQueue(Protocol):
    """A redis-py pipeline or MULTI, sync or asyncio: commands are queued, replies come
    back in order from its execute()."""

    def execute_command(self, *args: str, **options: object) -> object: ...


def queue_read(pipe: CommandQueue, keys: Keys, stream: str) -> None:
    """Queue the reads of a stream's epoch on `pipe`; hand their two replies, in order,
    to `epoch_of`. Queue them in the MULTI that reads the history, so both are one
    snapshot."""
    pipe.execute_command("EXISTS", keys.hist(stream))
    pipe.execute_command("GET", keys.epoch(stream))


def epoch_of(exists: object, value: object) -> str | None:
    """The epoch of a stream's history from the replies to `queue_read`'s commands.

    None when there is no history, or a history without an epoch (written before epochs
    existed, or its epoch key evicted): the next publish gives it a new epoch, so None
    equals no epoch a client can hold. Raises ValueError for a reply that is no epoch.
    """
    if not exists or value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        raise ValueError(f"not an epoch reply: {value!r:.60}")
    return parse_epoch(value)


def read_epoch(client: redis.Redis, keys: Keys, stream: str) -> str | None:
    """A stream's history epoch, read on its own (tools and tests; the gateway queues
    `queue_read` with its history reads)."""
    pipe = client.pipeline(transaction=True)
    queue_read(pipe, keys, stream)
    exists, value = pipe.execute()
    return epoch_of(exists, value)


def parse_epoch(value: str) -> str:
    """Validate an epoch (say, one a client sent back); raises ValueError if it is none."""
    if not isinstance(value, str) or not EPOCH_RE.fullmatch(value):
        raise ValueError("epoch must be 1 to 32 characters from 0-9 and a-z")
    return value
