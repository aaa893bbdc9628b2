"""Which partitions this bridge process reads: a consumer group or a static split.

* Group mode (the default): the consumer subscribes to one regular expression covering
  the configured topics and patterns; Kafka shares the partitions among the group's
  members and moves them on a rebalance. The client refreshes topic metadata every
  `refresh_interval`, so new matching topics are picked up.
* Static mode (``--instance I --instances N``): partition p of every matching topic goes
  to instance p mod N; a watcher thread reads metadata every `refresh_interval` to find
  new topics and partitions. No group coordination, so nothing waits for joins.

Either way, partitions that arrive are handed to `Positions.added` (paused until their
position is read from Redis) and partitions that leave to `Positions.removed`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError

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
        parts = [re.escape(n) for n in self.names] + [f"(?:{p})" for p in patterns]
        self.regex = "^(?:" + "|".join(parts) + ")$"

    def matches(self, topic: str) -> bool:
        if topic in self.names:
            return True
        if topic.startswith("__") or not TOPIC_RE.fullmatch(topic):
            return False
        return any(p.match(topic) for p in self.patterns)

    def describe(self) -> str:
        return ", ".join([*self.names, *(f"/{p.pattern[3:-3]}/" for p in self.patterns)])


Handler = Callable[[Iterable[TopicPartition]], None]


class GroupListener(ConsumerRebalanceListener):
    """Forwards a group rebalance to the bridge: revoked, then newly assigned partitions."""

    def __init__(self, added: Handler, removed: Handler) -> None:
        self.added = added
        self.removed = removed

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        revoked = list(revoked)
        if revoked:
            log.info("group rebalance: %d partitions revoked", len(revoked))
        self.removed(revoked)

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        assigned = list(assigned)
        log.info("group rebalance: %d partitions assigned: %s", len(assigned), _brief(assigned))
        self.added(assigned)


class MetadataWatcher:
    """Reads the cluster's topics and partitions every `interval` seconds on a thread of
    its own, with a client of its own: kafka-python's metadata calls block until a broker
    answers, and the consume loop must never wait on them (SIGTERM, Redis faults).

    Its snapshots drive the static split; in both modes they also tell whether Kafka
    answers (`answering`): no snapshot for three intervals means no broker does.
    """

    def __init__(self, connection: dict[str, Any], selection: TopicSelection, interval: float) -> None:
        """`connection`: bridge.kafkaclient.connection_config, as the consumer uses it."""
        self.connection = dict(connection, client_id=f"{connection['client_id']}-metadata")
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
        consumer: KafkaConsumer | None = None
        failing = False
        while not self.closed.is_set():
            try:
                if consumer is None:
                    consumer = KafkaConsumer(**self.connection)
                topics = {t for t in consumer.topics() if self.selection.matches(t)}
                snapshot = {t: set(consumer.partitions_for_topic(t) or ()) for t in topics}
                self.latest = snapshot
                self.version += 1
                self.last_ok = time.monotonic()
                failing = False
            except KafkaError as exc:
                if not failing:
                    log.warning("could not read topic metadata (%s); retrying every %.0fs", exc, self.interval)
                failing = True
            self.closed.wait(self.interval)
        if consumer is not None:
            consumer.close()

    def close(self) -> None:
        self.closed.set()


class StaticAssigner:
    """Static split: this instance's share of the matching topics' partitions."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        watcher: MetadataWatcher,
        instance: int,
        instances: int,
        added: Handler,
        removed: Handler,
    ) -> None:
        self.consumer = consumer
        self.watcher = watcher
        self.instance = instance
        self.instances = instances
        self.added = added
        self.removed = removed
        self.current: set[TopicPartition] = set()
        self.seen_version = 0
        self.missing_warned: set[str] = set()

    def wanted(self, snapshot: dict[str, set[int]]) -> set[TopicPartition]:
        """This instance's partitions according to a metadata snapshot."""
        for name in self.watcher.selection.names:
            if name not in snapshot and name not in self.missing_warned:
                log.warning("topic %s does not exist (yet); looking again every %.0fs", name, self.watcher.interval)
                self.missing_warned.add(name)
        return {
            TopicPartition(topic, p)
            for topic, parts in snapshot.items()
            for p in parts
            if p % self.instances == self.instance
        }

    def maintain(self) -> None:
        """Apply the newest metadata snapshot, if there is a new one (never blocks)."""
        snapshot, version = self.watcher.latest, self.watcher.version
        if snapshot is None or version == self.seen_version:
            return
        self.seen_version = version
        wanted = self.wanted(snapshot)
        if wanted == self.current:
            return
        new, gone = wanted - self.current, self.current - wanted
        self.consumer.assign(sorted(wanted))
        self.current = wanted
        if gone:
            log.info("static split: %d partitions gone: %s", len(gone), _brief(gone))
            self.removed(gone)
        if new:
            log.info(
                "static split (instance %d of %d): %d new partitions: %s",
                self.instance,
                self.instances,
                len(new),
                _brief(new),
            )
            self.added(new)


def _brief(parts: Iterable[TopicPartition], limit: int = 12) -> str:
    names = sorted(f"{tp.topic}:{tp.partition}" for tp in parts)
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
