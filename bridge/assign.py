"""Which partitions this bridge process reads: a consumer group or a static split.

* Group mode (the default): the consumer subscribes to one regular expression covering
  the configured topics and patterns; Kafka shares the partitions among the group's
  members and moves them on a rebalance. The client refreshes topic metadata every
  `refresh_interval`, so new matching topics are picked up.
* Static mode (``--instance I --instances N``): partition p of every matching topic goes
  to instance p mod N; metadata is refreshed every `refresh_interval` to find new
  topics and partitions. No group coordination, so nothing waits for joins.

Either way, partitions that arrive are handed to `Positions.added` (paused until their
position is read from Redis) and partitions that leave to `Positions.removed`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable

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


class StaticAssigner:
    """Static split: this instance's share of the matching topics' partitions."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        selection: TopicSelection,
        instance: int,
        instances: int,
        refresh_interval: float,
        added: Handler,
        removed: Handler,
    ) -> None:
        self.consumer = consumer
        self.selection = selection
        self.instance = instance
        self.instances = instances
        self.refresh_interval = refresh_interval
        self.added = added
        self.removed = removed
        self.current: set[TopicPartition] = set()
        self.next_refresh = 0.0
        self.missing_warned: set[str] = set()

    def wanted(self) -> set[TopicPartition]:
        """This instance's partitions according to fresh cluster metadata."""
        topics = {t for t in self.consumer.topics() if self.selection.matches(t)}
        for name in self.selection.names:
            if name not in topics and name not in self.missing_warned:
                log.warning("topic %s does not exist (yet); looking again every %.0fs", name, self.refresh_interval)
                self.missing_warned.add(name)
        parts: set[TopicPartition] = set()
        for topic in topics:
            for p in self.consumer.partitions_for_topic(topic) or ():
                if p % self.instances == self.instance:
                    parts.add(TopicPartition(topic, p))
        return parts

    def maintain(self, now: float | None = None) -> None:
        """Refresh the assignment when it is due; Kafka being unreachable only delays it."""
        now = time.monotonic() if now is None else now
        if now < self.next_refresh:
            return
        self.next_refresh = now + self.refresh_interval
        try:
            wanted = self.wanted()
        except KafkaError as exc:
            log.warning("could not refresh topic metadata (%s); keeping %d partitions", exc, len(self.current))
            return
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
