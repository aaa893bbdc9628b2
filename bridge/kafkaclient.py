"""The bridge's seam to Kafka: the small interface the rest of the bridge talks to, the
choice of the client behind it (`bridge.client`), the security settings every client
checks the same way, and waiting for a broker at start.

Two backends implement it, one module each: `bridge.kafka_python` (kafka-python, the
default) and `bridge.confluent_kafka` (librdkafka). No other module of the bridge imports
a Kafka client library, so Redis-decided positions, effectively-once publishing, the
group and static modes, routing and decoding are the same code whichever client runs.

Invariants every backend keeps (the bridge relies on them):

* a paused partition returns no records; once resumed it goes on from its first record
  not returned, unless `seek` said otherwise;
* `seek` (and `seek_to_*`) on a partition of `assignment()` decides its next record, even
  while it is paused or has not fetched anything yet;
* `assign` keeps the position and pause state of partitions that stay;
* group callbacks (`added`, `removed`) run inside `poll`, on the caller's thread;
* a failed Kafka call raises `KafkaFailure` (never the library's own error type);
* no offset is committed except through `commit_async` and `commit`.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from settings import Settings
from settings.model import KafkaSettings

log = logging.getLogger(__name__)

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
BACKENDS = {"kafka-python": "bridge.kafka_python", "confluent-kafka": "bridge.confluent_kafka"}


class TopicPartition(NamedTuple):
    topic: str
    partition: int


class Record(Protocol):
    """One Kafka message as the bridge reads it."""

    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int:
        """Milliseconds since the epoch; -1 when the message has none."""

    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


Handler = Callable[[list[TopicPartition]], None]
CommitFailed = Callable[[dict[TopicPartition, int], Exception], None]


class KafkaFailure(Exception):
    """A Kafka call failed (the client's own error, as text); the caller retries later."""


class NoBroker(KafkaFailure):
    """No broker answered at start."""


class KafkaClient(Protocol):
    """The consumer, as the bridge uses it (see the module's invariants)."""

    def subscribe(self, topics: list[str], added: Handler, removed: Handler) -> None:
        """Join the group for these topics (replacing any earlier list); partitions
        arrive and leave through `added` and `removed` (revoked first), inside `poll`."""

    def assign(self, parts: list[TopicPartition]) -> None:
        """Read exactly these partitions, without a group (the static split)."""

    def assignment(self) -> set[TopicPartition]: ...
    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Record]]:
        """The records ready now, by partition, in offset order; waits up to
        `timeout_ms` for the first one."""

    def pause(self, parts: Iterable[TopicPartition]) -> None: ...
    def resume(self, parts: Iterable[TopicPartition]) -> None: ...
    def paused(self) -> set[TopicPartition]: ...
    def seek(self, tp: TopicPartition, offset: int) -> None: ...
    def seek_to_beginning(self, tp: TopicPartition) -> None: ...
    def seek_to_end(self, tp: TopicPartition) -> None: ...
    def highwater(self, tp: TopicPartition) -> int | None:
        """The partition's high watermark as the last fetch saw it; None before one."""

    def committed(self, parts: list[TopicPartition], timeout_ms: int) -> dict[TopicPartition, int]:
        """The group's committed offsets, in one request; partitions with none are left out."""

    def commit_async(self, offsets: dict[TopicPartition, int], failed: CommitFailed) -> None:
        """Commit these next offsets without waiting; `failed` is called (inside a later
        `poll`) with those that did not make it."""

    def commit(self, offsets: dict[TopicPartition, int], timeout_ms: int) -> None:
        """Commit and wait at most `timeout_ms`: at shutdown, before `close` (a client may
        stop fetching meanwhile)."""

    def close(self, timeout_ms: int) -> None:
        """Leave the group and disconnect, taking at most about `timeout_ms`."""


class MetadataClient(Protocol):
    """A client of its own for reading the cluster's topics (bridge.assign.MetadataWatcher)."""

    def topics(self) -> dict[str, set[int]]:
        """Every topic and its partitions; raises KafkaFailure when no broker answers."""

    def close(self) -> None: ...


class Backend(Protocol):
    """What a backend module offers."""

    def open_consumer(self, settings: Settings, security: Security) -> KafkaClient:
        """A consumer once a broker answers. Raises NoBroker, or ValueError for settings
        the client refuses and a broker certificate that does not verify."""

    def open_metadata(self, kafka: KafkaSettings, security: Security) -> MetadataClient: ...


@dataclass(frozen=True)
class Security:
    """The checked TLS and SASL settings, in the terms of neither client."""

    protocol: str
    cafile: str = ""
    certfile: str = ""
    keyfile: str = ""
    check_hostname: bool = True
    mechanism: str = ""
    username: str = ""
    password: str = field(default="", repr=False)

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")


def check_security(k: KafkaSettings) -> Security:
    """Raises ValueError naming the setting for a combination that cannot work, rather
    than letting a client retry a connection that will never succeed."""
    protocol = k.security_protocol.upper()
    if protocol not in PROTOCOLS:
        raise ValueError(f"kafka.security_protocol must be one of {', '.join(PROTOCOLS)}, not {k.security_protocol!r}")
    tls = protocol in ("SSL", "SASL_SSL")
    files = {"ssl_cafile": k.ssl_cafile, "ssl_certfile": k.ssl_certfile, "ssl_keyfile": k.ssl_keyfile}
    for name, path in files.items():
        if not path:
            continue
        if not tls:
            raise ValueError(f"kafka.{name} is set but kafka.security_protocol {protocol} does not use TLS")
        if not os.access(path, os.R_OK):
            raise ValueError(f"kafka.{name}: cannot read {path!r}")
    mechanism = ""
    if protocol.startswith("SASL_"):
        mechanism = k.sasl_mechanism.upper()
        if mechanism not in MECHANISMS:
            raise ValueError(f"kafka.sasl_mechanism must be one of {', '.join(MECHANISMS)} for {protocol}")
        if not k.sasl_username or not k.sasl_password:
            raise ValueError(f"kafka.sasl_username and kafka.sasl_password are required for {protocol}")
    elif k.sasl_mechanism or k.sasl_username or k.sasl_password:
        raise ValueError(f"kafka.sasl_* is set but kafka.security_protocol {protocol} does not use SASL")
    return Security(
        protocol,
        cafile=k.ssl_cafile,
        certfile=k.ssl_certfile,
        keyfile=k.ssl_keyfile,
        check_hostname=k.ssl_check_hostname,
        mechanism=mechanism,
        username=k.sasl_username,
        password=k.sasl_password,
    )


def tls_refused(bootstrap: str, reason: str) -> ValueError:
    """The start-up error for a broker certificate that does not verify: retrying cannot help."""
    return ValueError(
        f"TLS with the Kafka broker at {bootstrap} failed: {reason} "
        "(check kafka.ssl_cafile, kafka.ssl_check_hostname and the broker's certificate)"
    )


def backend(name: str) -> Backend:
    """The backend module for `bridge.client`; ValueError for an unknown name."""
    if name not in BACKENDS:
        raise ValueError(f"bridge.client must be one of {', '.join(BACKENDS)}, not {name!r}")
    module: Backend = importlib.import_module(BACKENDS[name])  # type: ignore[assignment]
    return module


def connect(chosen: Backend, settings: Settings, security: Security, stop: threading.Event) -> KafkaClient | None:
    """The consumer of the chosen backend once a broker answers (retrying with backoff);
    None if `stop` is set first. Raises ValueError for settings the client refuses."""
    delay = settings.bridge.retry_initial
    while True:
        try:
            return chosen.open_consumer(settings, security)
        except NoBroker:
            log.warning("no Kafka broker answers at %s; retrying in %.1fs", settings.kafka.bootstrap, delay)
            if stop.wait(delay):
                return None
            delay = min(delay * 2, settings.bridge.retry_max)
