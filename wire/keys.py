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
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "tailgate:"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix. Callers pass validated stream names."""

    prefix: str = DEFAULT_PREFIX

    def live(self, stream: str) -> str:
        return f"{self.prefix}live:{stream}"

    def hist(self, stream: str) -> str:
        return f"{self.prefix}hist:{stream}"

    def epoch(self, stream: str) -> str:
        return f"{self.prefix}epoch:{stream}"

    def stream_of_channel(self, channel: str | bytes) -> str | None:
        """The stream name a live channel carries, or None for a foreign channel."""
        if isinstance(channel, bytes):
            channel = channel.decode("utf-8", "replace")
        live = f"{self.prefix}live:"
        return channel[len(live) :] if channel.startswith(live) else None

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
