"""Which streams a topic's lines go to."""

from __future__ import annotations

from wire.names import kafka_stream


def whole_topic_stream(topic: str) -> str:
    """The stream carrying every line of `topic`."""
    return kafka_stream(topic).name
