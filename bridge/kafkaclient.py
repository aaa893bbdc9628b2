"""The bridge's Kafka consumer: its settings, and waiting for a broker to answer."""

from __future__ import annotations

import logging
import threading

from kafka import KafkaConsumer
from kafka.errors import KafkaConfigurationError, NoBrokersAvailable

from settings import Settings

log = logging.getLogger(__name__)


def make_consumer(settings: Settings) -> KafkaConsumer:
    """A consumer with no auto-commit (Redis records offsets) and a short fetch wait."""
    k, b = settings.kafka, settings.bridge
    return KafkaConsumer(
        bootstrap_servers=k.bootstrap.split(","),
        client_id=k.client_id,
        group_id=b.group_id if (b.use_group or b.commit_offsets) else None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # only when a log started over; see bridge.positions
        fetch_max_wait_ms=k.fetch_max_wait_ms,
        max_poll_records=k.max_poll_records,
        max_poll_interval_ms=k.max_poll_interval_ms,
        session_timeout_ms=k.session_timeout_ms,
        heartbeat_interval_ms=k.heartbeat_interval_ms,
        request_timeout_ms=k.request_timeout_ms,
        metadata_max_age_ms=int(b.refresh_interval * 1000),
    )


def connect(settings: Settings, stop: threading.Event) -> KafkaConsumer | None:
    """The consumer, once a broker answers (retrying with backoff); None if `stop` is set
    first. Raises ValueError for Kafka settings the client refuses."""
    b = settings.bridge
    delay = b.retry_initial
    while True:
        try:
            return make_consumer(settings)
        except KafkaConfigurationError as exc:
            raise ValueError(f"kafka settings: {exc}") from None
        except NoBrokersAvailable:
            log.warning("no Kafka broker answers at %s; retrying in %.1fs", settings.kafka.bootstrap, delay)
            if stop.wait(delay):
                return None
            delay = min(delay * 2, b.retry_max)
