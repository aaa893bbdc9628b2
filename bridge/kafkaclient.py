"""The bridge's Kafka consumer: its settings (connection and security included), and
waiting for a broker to answer."""

from __future__ import annotations

import logging
import os
import ssl
import threading
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import KafkaConfigurationError, NoBrokersAvailable

from settings import Settings
from settings.model import KafkaSettings

log = logging.getLogger(__name__)

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def connection_config(k: KafkaSettings) -> dict[str, Any]:
    """kafka-python's arguments for reaching the brokers: servers, client id, TLS and SASL.

    Every client of the bridge (the consumer, the metadata watcher) connects with these.
    Raises ValueError naming the setting for a combination that cannot work, rather than
    letting the client retry a connection that will never succeed."""
    protocol = k.security_protocol.upper()
    if protocol not in PROTOCOLS:
        raise ValueError(f"kafka.security_protocol must be one of {', '.join(PROTOCOLS)}, not {k.security_protocol!r}")
    config: dict[str, Any] = {
        "bootstrap_servers": k.bootstrap.split(","),
        "client_id": k.client_id,
        "security_protocol": protocol,
    }
    tls, sasl = protocol in ("SSL", "SASL_SSL"), protocol.startswith("SASL_")
    files = {"ssl_cafile": k.ssl_cafile, "ssl_certfile": k.ssl_certfile, "ssl_keyfile": k.ssl_keyfile}
    for name, path in files.items():
        if not path:
            continue
        if not tls:
            raise ValueError(f"kafka.{name} is set but kafka.security_protocol {protocol} does not use TLS")
        if not os.access(path, os.R_OK):
            raise ValueError(f"kafka.{name}: cannot read {path!r}")
        config[name] = path
    if tls:
        config["ssl_check_hostname"] = k.ssl_check_hostname
    if sasl:
        mechanism = k.sasl_mechanism.upper()
        if mechanism not in MECHANISMS:
            raise ValueError(f"kafka.sasl_mechanism must be one of {', '.join(MECHANISMS)} for {protocol}")
        if not k.sasl_username or not k.sasl_password:
            raise ValueError(f"kafka.sasl_username and kafka.sasl_password are required for {protocol}")
        config.update(sasl_mechanism=mechanism, sasl_plain_username=k.sasl_username)
        config["sasl_plain_password"] = k.sasl_password
    elif k.sasl_mechanism or k.sasl_username or k.sasl_password:
        raise ValueError(f"kafka.sasl_* is set but kafka.security_protocol {protocol} does not use SASL")
    return config


def make_consumer(settings: Settings) -> KafkaConsumer:
    """A consumer with no auto-commit (Redis records offsets) and a short fetch wait."""
    k, b = settings.kafka, settings.bridge
    return KafkaConsumer(
        **connection_config(k),
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
    first. Raises ValueError for Kafka settings the client refuses, and for a broker whose
    TLS certificate does not verify."""
    b = settings.bridge
    delay = b.retry_initial
    while True:
        try:
            return make_consumer(settings)
        except KafkaConfigurationError as exc:
            raise ValueError(f"kafka settings: {exc}") from None
        except ssl.SSLCertVerificationError as exc:  # retrying cannot help
            raise ValueError(
                f"TLS with the Kafka broker at {settings.kafka.bootstrap} failed: {exc.reason}: "
                f"{exc.verify_message} (check kafka.ssl_cafile, kafka.ssl_check_hostname and the broker's certificate)"
            ) from None
        except NoBrokersAvailable:
            log.warning("no Kafka broker answers at %s; retrying in %.1fs", settings.kafka.bootstrap, delay)
            if stop.wait(delay):
                return None
            delay = min(delay * 2, b.retry_max)
