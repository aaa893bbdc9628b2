"""Which streams a topic's lines go to, from the `bridge.routes` rules (pure; no I/O).

Every topic has its whole stream ``kafka:<topic>``. A rule may split a topic into
sub-streams ``kafka:<topic>/<sub>``, the sub named by the message key (`split_by: key`)
or by a field of a JSON value (`split_by: field`; a dotted path like ``host.name``
reaches into nested objects), and may keep the whole stream too (`keep_whole`).

A line whose sub cannot be named (no key, no such field, a value the contract refuses
as a sub-stream name, or the topic already has `max_subs` sub-streams) goes to the whole
stream instead, and is counted by kind, so it is never lost.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bridge.decode import Decoder
from settings.model import BridgeSettings, RouteSettings
from wire.names import StreamNameError, check_topic, kafka_stream

SPLITS = ("", "key", "field")


def whole_topic_stream(topic: str) -> str:
    """The stream carrying every line of `topic` (raises StreamNameError for a bad name)."""
    return kafka_stream(topic).name


def full_match(pattern: str) -> re.Pattern[str]:
    """Compile a topic pattern so that it must match the whole topic name."""
    return re.compile(f"(?:{pattern})\\Z")


@dataclass(frozen=True)
class Rule:
    """One validated routing rule."""

    settings: RouteSettings
    pattern: re.Pattern[str] | None

    def matches(self, topic: str) -> bool:
        if self.pattern is not None:
            return self.pattern.match(topic) is not None
        return topic == self.settings.topic


def check_rule(index: int, r: RouteSettings) -> Rule:
    """Validate one rule; raises ValueError naming the setting at fault."""
    where = f"bridge.routes[{index}]"
    if bool(r.topic) == bool(r.pattern):
        raise ValueError(f"{where}: set exactly one of topic or pattern")
    pattern = None
    if r.topic:
        try:
            check_topic(r.topic)
        except StreamNameError as exc:
            raise ValueError(f"{where}.topic: {exc}") from None
    else:
        try:
            pattern = full_match(r.pattern)
        except re.error as exc:
            raise ValueError(f"{where}.pattern: not a valid regular expression: {exc}") from None
    if r.split_by not in SPLITS:
        raise ValueError(f"{where}.split_by: must be '', 'key' or 'field', not {r.split_by!r}")
    if r.split_by == "field" and not r.field:
        raise ValueError(f"{where}.field: required with split_by: field")
    if r.max_subs < 1:
        raise ValueError(f"{where}.max_subs: must be at least 1")
    try:
        Decoder(r.format, r.text_field)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return Rule(r, pattern)


class Route:
    """How one topic's messages are decoded and which streams their lines go to."""

    __slots__ = ("decoder", "field", "keep_whole", "max_subs", "split_by", "subs", "topic", "whole", "whole_only")

    def __init__(self, topic: str, rule: RouteSettings | None, max_line_bytes: int) -> None:
        r = rule or RouteSettings(topic=topic)
        self.topic = topic
        self.whole = whole_topic_stream(topic)
        self.whole_only = (self.whole,)
        self.decoder = Decoder(r.format, r.text_field, max_line_bytes)
        self.split_by = r.split_by
        self.field = tuple(r.field.split(".")) if r.field else ()
        self.keep_whole = r.keep_whole
        self.max_subs = r.max_subs
        # sub value -> the streams its lines go to; None marks a value the contract refuses
        self.subs: dict[str, tuple[str, ...] | None] = {}

    def streams(self, key: bytes | None, meta: dict[str, Any] | None, errors: Counter[str]) -> tuple[str, ...]:
        """The streams a message's lines go to, given its key and decoded meta."""
        if not self.split_by:
            return self.whole_only
        sub = self._sub_value(key, meta)
        if sub is None:
            errors["no_sub"] += 1
            return self.whole_only
        streams = self.subs.get(sub, ())
        if streams == ():
            streams = self._new_sub(sub, errors)
        if streams is None:
            errors["bad_sub"] += 1
            return self.whole_only
        return streams

    def _sub_value(self, key: bytes | None, meta: dict[str, Any] | None) -> str | None:
        if self.split_by == "key":
            return key.decode("utf-8", "replace") if key else None
        value: Any = meta
        for part in self.field:
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
            return None
        return str(value)

    def _new_sub(self, sub: str, errors: Counter[str]) -> tuple[str, ...] | None:
        if len(self.subs) >= self.max_subs:
            errors["too_many_subs"] += 1
            return self.whole_only
        try:
            name = kafka_stream(self.topic, sub).name
        except StreamNameError:
            self.subs[sub] = None
            return None
        streams = (self.whole, name) if self.keep_whole else (name,)
        self.subs[sub] = streams
        return streams


class Router:
    """Picks each topic's route: the first rule naming the topic, else the first whose
    pattern matches, else the default (whole topic, format auto)."""

    def __init__(self, bridge: BridgeSettings) -> None:
        self.rules = [check_rule(i, r) for i, r in enumerate(bridge.routes)]
        self.max_line_bytes = bridge.max_line_bytes
        self.routes: dict[str, Route] = {}

    def rule_for(self, topic: str) -> RouteSettings | None:
        named = [rule for rule in self.rules if rule.pattern is None and rule.matches(topic)]
        if named:
            return named[0].settings
        matching = [rule for rule in self.rules if rule.pattern is not None and rule.matches(topic)]
        return matching[0].settings if matching else None

    def route(self, topic: str) -> Route:
        """The route for `topic` (raises StreamNameError for a topic the contract refuses)."""
        route = self.routes.get(topic)
        if route is None:
            route = self.routes[topic] = Route(topic, self.rule_for(topic), self.max_line_bytes)
        return route

    def named_topics(self) -> list[str]:
        """Topics named by a rule: consumed even if not listed in bridge.topics."""
        return [rule.settings.topic for rule in self.rules if rule.pattern is None]

    def patterns(self) -> list[str]:
        """Rule patterns: matching topics are consumed too."""
        return [rule.settings.pattern for rule in self.rules if rule.pattern is not None]
