"""Which partitions this bridge process reads: a consumer group or a static split.

A watcher thread reads the cluster's topics every `min(refresh_interval, 5)` seconds and
keeps those the configuration selects (Python regular expressions, the same whichever
Kafka client runs); the consume loop applies each new snapshot without waiting:

* Group mode (the default): the consumer subscribes to the selected topics, again when
  that list changes; Kafka shares the partitions among the group's members and moves
  them on a rebalance.
* Static mode (``--instance I --instances N``): partition p of every selected topic goes
  to instance p mod N. No group coordination, so nothing waits for joins.

Either way, partitions that arrive are handed to `Positions.added` (paused until their
position is read from Redis) and partitions that leave to `Positions.removed`. This
module talks to Kafka only through bridge.kafkaclient.
"""

from __future__ import annotations

import abc
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable

from bridge.kafkaclient import Handler, KafkaClient, KafkaFailure, MetadataClient, TopicPartition
from bridge.route import Router, full_match
from settings.model import BridgeSettings
from wire.names import TOPIC_RE

log = logging.getLogger(__name__)


class TopicSelection:
    """The topics a bridge consumes: `bridge.topics`, `bridge.topic_pattern`, and every
    topic or pattern named by a routing rule. Internal topics (``__*``) only by name."""

    def __init__(self, bridge: BridgeSettings, router: Router) -> None:
        self.names = sorted({*bridge.topics, *router.named_topics()})
        for name in self.names:
            if not TOPIC_RE.fullmatch(name):
                raise ValueError(f"bridge.topics: not a valid topic name: {name!r:.80}")
        patterns = [p for p in [bridge.topic_pattern, *router.patterns()] if p]
        try:
            self.patterns = [full_match(p) for p in patterns]
        except re.error as exc:
            raise ValueError(f"bridge.topic_pattern: not a valid regular expression: {exc}") from None
        if not self.names and not self.patterns:
            raise ValueError("no topics to consume: set bridge.topics, bridge.topic_pattern or bridge.routes")

    def matches(self, topic: str) -> bool:
        if topic in self.names:
            return True
        if topic.startswith("__") or not TOPIC_RE.fullmatch(topic):
            return False
        return any(p.match(topic) for p in self.patterns)

    def describe(self) -> str:
        return ", ".join([*self.names, *(f"/{p.pattern[3:-3]}/" for p in self.patterns)])


class MetadataWatcher:
    """Reads the cluster's topics and partitions every `interval` seconds on a thread of
    its own, with a client of its own: metadata calls block until a broker answers, and
    the consume loop must never wait on them (SIGTERM, Redis faults).

    Its snapshots drive the static split; in both modes they also tell whether Kafka
    answers (`answering`): no snapshot for three intervals means no broker does.
    """

    def __init__(self, open_client: Callable[[], MetadataClient], selection: TopicSelection, interval: float) -> None:
        self.open_client = open_client
        self.selection = selection
        self.interval = interval
        self.latest: dict[str, set[int]] | None = None
        self.version = 0
        self.last_ok = time.monotonic()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bridge-metadata", daemon=True)

    def start(self) -> MetadataWatcher:
        self.thread.start()
        return self

    def answering(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) - self.last_ok < 3 * self.interval

    def _run(self) -> None:
        client = self.open_client()
        failing = False
        while not self.closed.is_set():
            try:
                found = client.topics()
                self.latest = {t: parts for t, parts in found.items() if self.selection.matches(t)}
                self.version += 1
                self.last_ok = time.monotonic()
                failing = False
            except KafkaFailure as exc:
                if not failing:
                    log.warning("could not read topic metadata (%s); retrying every %.0fs", exc, self.interval)
                failing = True
            self.closed.wait(self.interval)
        client.close()

    def close(self) -> None:
        self.closed.set()


class _Follower(abc.ABC):
    """Applies the watcher's snapshots as they come (never blocks)."""

    def __init__(self, client: KafkaClient, watcher: MetadataWatcher, added: Handler, removed: Handler) -> None:
        self.client = client
        self.watcher = watcher
        self.added = added
        self.removed = removed
        self.seen_version = 0
        self.missing_warned: set[str] = set()

    def maintain(self) -> None:
        """Apply the newest metadata snapshot, if there is a new one."""
        snapshot, version = self.watcher.latest, self.watcher.version
        if snapshot is None or version == self.seen_version:
            return
        self.seen_version = version
        for name in self.watcher.selection.names:
            if name not in snapshot and name not in self.missing_warned:
                log.warning("topic %s does not exist (yet); looking again every %.0fs", name, self.watcher.interval)
                self.missing_warned.add(name)
        self.apply(snapshot)

    @abc.abstractmethod
    def apply(self, snapshot: dict[str, set[int]]) -> None:
        """Follow a new snapshot of the selected topics and their partitions."""


class GroupMember(_Follower):
    """Group mode: subscribed to the selected topics; Kafka shares their partitions."""

    def __init__(self, client: KafkaClient, watcher: MetadataWatcher, added: Handler, removed: Handler) -> None:
        super().__init__(client, watcher, added, removed)
        self.topics: list[str] = []

    def apply(self, snapshot: dict[str, set[int]]) -> None:
        topics = sorted(snapshot)
        if not topics or topics == self.topics:
            return  # a topic that disappears leaves the group's assignment by itself
        self.topics = topics
        self.client.subscribe(topics, self._added, self._removed)
        log.info("subscribed to %d topics: %s", len(topics), ", ".join(topics[:12]))

    def _removed(self, revoked: list[TopicPartition]) -> None:
        if revoked:
            log.info("group rebalance: %d partitions revoked", len(revoked))
        self.removed(revoked)

    def _added(self, assigned: list[TopicPartition]) -> None:
        log.info("group rebalance: %d partitions assigned: %s", len(assigned), _brief(assigned))
        self.added(assigned)


class StaticAssigner(_Follower):
    """Static split: this instance's share of the selected topics' partitions."""

    def __init__(
        self,
        client: KafkaClient,
        watcher: MetadataWatcher,
        instance: int,
        instances: int,
        added: Handler,
        removed: Handler,
    ) -> None:
        super().__init__(client, watcher, added, removed)
        self.instance = instance
        self.instances = instances
        self.current: set[TopicPartition] = set()

    def apply(self, snapshot: dict[str, set[int]]) -> None:
        wanted = {
            TopicPartition(topic, p)
            for topic, parts in snapshot.items()
            for p in parts
            if p % self.instances == self.instance
        }
        if wanted == self.current:
            return
        new, gone = wanted - self.current, self.current - wanted
        self.client.assign(sorted(wanted))
        self.current = wanted
        if gone:
            log.info("static split: %d partitions gone: %s", len(gone), _brief(gone))
            self.removed(sorted(gone))
        if new:
            log.info(
                "static split (instance %d of %d): %d new partitions: %s",
                self.instance,
                self.instances,
                len(new),
                _brief(new),
            )
            self.added(sorted(new))


def _brief(parts: Iterable[TopicPartition], limit: int = 12) -> str:
    names = sorted(f"{tp.topic}:{tp.partition}" for tp in parts)
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
