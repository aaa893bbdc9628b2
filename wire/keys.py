"""Redis key and channel names: the one place that spells them.

Layout (prefix configurable, default ``tailgate:``):

* ``<prefix>live:<stream>``: pub/sub channel of a stream's live lines (contract).
* ``<prefix>hist:<stream>``: Redis Stream holding recent history (contract).
* ``<prefix>epoch:<stream>``: string, the history's epoch, changed whenever the history
  is created anew (contract; written by the publish step, read with `wire.epoch`).
* ``<prefix>offsets:<group>``: hash of the last published Kafka offset per
  ``topic:partition`` (bridge bookkeeping, written inside the publish step).
* ``<prefix>seen``: sorted set of stream names by last publish time, and
  ``<prefix>counts``: hash of lines published per stream; both feed the catalogue.
* ``<prefix>tail:wanted:<stream>``, ``tail:alive:<stream>``, ``tail:lock:<stream>``:
  the file-tail lifecycle shared by gateways and agents.

Cluster layout (``Keys(prefix, cluster=True)``, `redis.mode: cluster`; docs/CLUSTER.md):
a stream's name is the hash tag of its keys (``<prefix>hist:{<stream>}``,
``live:{<stream>}``, ``epoch:{<stream>}``), so they share one slot; `seen`, `counts`
and the bridge's checkpoints are one key per slot (``<prefix>seen:{<slot tag>}``,
``counts:{<slot tag>}``, ``offsets:<group>:{<slot tag>}``, wire/slots.py), so the
publish step for the streams of one slot touches that slot only; ``offsets:<group>``
then holds where each partition resumes (written by the bridge once every slot's call
of a batch succeeded). The tail keys are single keys, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from wire.slots import key_slot, slot_tag

DEFAULT_PREFIX = "tailgate:"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix. Callers pass validated stream names.

    `cluster`: the Redis Cluster layout (above); a prefix holding a brace would move the
    hash tag, so it is refused there."""

    prefix: str = DEFAULT_PREFIX
    cluster: bool = False

    def __post_init__(self) -> None:
        if self.cluster and ("{" in self.prefix or "}" in self.prefix):
            raise ValueError("redis.prefix must not hold '{' or '}' in cluster mode (they make hash tags)")

    def _tagged(self, stream: str) -> str:
        return f"{{{stream}}}" if self.cluster else stream

    def live(self, stream: str) -> str:
        return f"{self.prefix}live:{self._tagged(stream)}"

    def hist(self, stream: str) -> str:
        return f"{self.prefix}hist:{self._tagged(stream)}"

    def epoch(self, stream: str) -> str:
        return f"{self.prefix}epoch:{self._tagged(stream)}"

    def stream_of_channel(self, channel: str | bytes) -> str | None:
        """The stream name a live channel carries, or None for a foreign channel."""
        if isinstance(channel, bytes):
            channel = channel.decode("utf-8", "replace")
        live = f"{self.prefix}live:"
        if not channel.startswith(live):
            return None
        name = channel[len(live) :]
        if self.cluster:
            return name[1:-1] if name.startswith("{") and name.endswith("}") else None
        return name

    def slot(self, stream: str) -> int:
        """The cluster hash slot holding every key of `stream` (cluster layout)."""
        return key_slot(self.hist(stream))

    def seen_in(self, slot: int) -> str:
        """Cluster layout: the `seen` sorted set of the streams in `slot`."""
        return f"{self.prefix}seen:{{{slot_tag(slot)}}}"

    def counts_in(self, slot: int) -> str:
        """Cluster layout: the `counts` hash of the streams in `slot`."""
        return f"{self.prefix}counts:{{{slot_tag(slot)}}}"

    def per_slot_pattern(self, name: str) -> str:
        """A SCAN pattern matching every slot's key of one kind: ``seen``, ``counts`` or
        ``offsets:<group>`` (cluster layout)."""
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in f"{self.prefix}{name}")
        return escaped + ":{*}"

    def offsets_in(self, group: str, slot: int) -> str:
        """Cluster layout: a group's checkpoints for the lines published to `slot`."""
        if "{" in group or "}" in group:
            raise ValueError("a consumer group name must not hold '{' or '}' in cluster mode")
        return f"{self.prefix}offsets:{group}:{{{slot_tag(slot)}}}"

    def offsets(self, group: str) -> str:
        return f"{self.prefix}offsets:{group}"

    @property
    def seen(self) -> str:
        return f"{self.prefix}seen"

    @property
    def counts(self) -> str:
        return f"{self.prefix}counts"

    def tail_wanted(self, stream: str) -> str:
        return f"{self.prefix}tail:wanted:{stream}"

    def tail_alive(self, stream: str) -> str:
        return f"{self.prefix}tail:alive:{stream}"

    def tail_lock(self, stream: str) -> str:
        return f"{self.prefix}tail:lock:{stream}"
