"""The kafka-python backend of the bridge's Kafka client (`bridge.client: kafka-python`,
the default); see bridge.kafkaclient for the interface and its invariants.

kafka-python already behaves as the interface asks (a paused partition's fetched records
are dropped without moving its position; `assign` keeps the partitions that stay), so
this is a thin translation: its TopicPartition and OffsetAndMetadata, and its KafkaError
raised as KafkaFailure.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaConfigurationError, KafkaError, NoBrokersAvailable
from kafka.structs import OffsetAndMetadata

from bridge.kafkaclient import (
    CommitFailed,
    Handler,
    KafkaFailure,
    NoBroker,
    Record,
    Security,
    TopicPartition,
    tls_refused,
)
from settings import Settings
from settings.model import KafkaSettings


def connection_config(k: KafkaSettings, security: Security) -> dict[str, Any]:
    """kafka-python's arguments for reaching the brokers: servers, client id, TLS and SASL."""
    config: dict[str, Any] = {
        "bootstrap_servers": k.bootstrap.split(","),
        "client_id": k.client_id,
        "security_protocol": security.protocol,
    }
    if security.tls:
        config["ssl_check_hostname"] = security.check_hostname
        for name, path in (("ssl_cafile", security.cafile), ("ssl_certfile", security.certfile)):
            if path:
                config[name] = path
        if security.keyfile:
            config["ssl_keyfile"] = security.keyfile
    if security.sasl:
        config.update(sasl_mechanism=security.mechanism, sasl_plain_username=security.username)
        config["sasl_plain_password"] = security.password
    return config


def open_consumer(settings: Settings, security: Security) -> KafkaPythonClient:
    k, b = settings.kafka, settings.bridge
    try:
        consumer = KafkaConsumer(
            **connection_config(k, security),
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
    except KafkaConfigurationError as exc:
        raise ValueError(f"kafka settings: {exc}") from None
    except ssl.SSLCertVerificationError as exc:
        raise tls_refused(k.bootstrap, f"{exc.reason}: {exc.verify_message}") from None
    except NoBrokersAvailable as exc:
        raise NoBroker(str(exc)) from None
    return KafkaPythonClient(consumer)


def open_metadata(kafka: KafkaSettings, security: Security) -> KafkaPythonMetadata:
    config = connection_config(kafka, security)
    config["client_id"] = f"{config['client_id']}-metadata"
    return KafkaPythonMetadata(config)


def _theirs(tp: TopicPartition) -> KafkaTopicPartition:
    return KafkaTopicPartition(tp.topic, tp.partition)


def _ours(tps: Iterable[KafkaTopicPartition]) -> set[TopicPartition]:
    return {TopicPartition(tp.topic, tp.partition) for tp in tps}


class _Listener(ConsumerRebalanceListener):
    def __init__(self, added: Handler, removed: Handler) -> None:
        self.added = added
        self.removed = removed

    def on_partitions_revoked(self, revoked: Iterable[KafkaTopicPartition]) -> None:
        self.removed(sorted(_ours(revoked)))

    def on_partitions_assigned(self, assigned: Iterable[KafkaTopicPartition]) -> None:
        self.added(sorted(_ours(assigned)))


class KafkaPythonClient:
    """bridge.kafkaclient.KafkaClient over a kafka-python KafkaConsumer."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer

    def subscribe(self, topics: list[str], added: Handler, removed: Handler) -> None:
        self.consumer.subscribe(topics=topics, listener=_Listener(added, removed))

    def assign(self, parts: list[TopicPartition]) -> None:
        self.consumer.assign([_theirs(tp) for tp in parts])

    def assignment(self) -> set[TopicPartition]:
        return _ours(self.consumer.assignment())

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Record]]:
        try:
            polled = self.consumer.poll(timeout_ms=timeout_ms)
        except KafkaError as exc:
            raise KafkaFailure(str(exc)) from exc
        return {TopicPartition(tp.topic, tp.partition): records for tp, records in polled.items()}

    def pause(self, parts: Iterable[TopicPartition]) -> None:
        self.consumer.pause(*map(_theirs, parts))

    def resume(self, parts: Iterable[TopicPartition]) -> None:
        self.consumer.resume(*map(_theirs, parts))

    def paused(self) -> set[TopicPartition]:
        return _ours(self.consumer.paused())

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.consumer.seek(_theirs(tp), offset)

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.consumer.seek_to_beginning(_theirs(tp))

    def seek_to_end(self, tp: TopicPartition) -> None:
        self.consumer.seek_to_end(_theirs(tp))

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.consumer.highwater(_theirs(tp))

    def committed(self, parts: list[TopicPartition], timeout_ms: int) -> dict[TopicPartition, int]:
        if not parts:
            return {}
        try:
            # KafkaConsumer.committed asks for one partition per request; its coordinator,
            # which that method calls, asks for all of them at once.
            found = self.consumer._coordinator.fetch_committed_offsets(
                [_theirs(tp) for tp in parts], timeout_ms=timeout_ms
            )
        except KafkaError as exc:
            raise KafkaFailure(str(exc)) from exc
        return {
            TopicPartition(tp.topic, tp.partition): meta.offset
            for tp, meta in found.items()
            if meta is not None and meta.offset >= 0
        }

    def commit_async(self, offsets: dict[TopicPartition, int], failed: CommitFailed) -> None:
        def answered(sent: dict[KafkaTopicPartition, OffsetAndMetadata], response: Any) -> None:
            if isinstance(response, Exception):
                failed({TopicPartition(tp.topic, tp.partition): m.offset for tp, m in sent.items()}, response)

        try:
            self.consumer.commit_async(offsets=self._metas(offsets), callback=answered)
        except KafkaError as exc:
            raise KafkaFailure(str(exc)) from exc

    def commit(self, offsets: dict[TopicPartition, int], timeout_ms: int) -> None:
        try:
            self.consumer.commit(self._metas(offsets), timeout_ms=timeout_ms)
        except KafkaError as exc:
            raise KafkaFailure(str(exc)) from exc

    @staticmethod
    def _metas(offsets: dict[TopicPartition, int]) -> dict[KafkaTopicPartition, OffsetAndMetadata]:
        return {_theirs(tp): OffsetAndMetadata(nxt, "", -1) for tp, nxt in offsets.items()}

    def close(self, timeout_ms: int) -> None:
        try:
            self.consumer.close(autocommit=False, timeout_ms=timeout_ms)
        except KafkaError as exc:
            raise KafkaFailure(str(exc)) from exc


class KafkaPythonMetadata:
    """bridge.kafkaclient.MetadataClient: a KafkaConsumer of its own, made at first use
    (its constructor waits for a broker)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.consumer: KafkaConsumer | None = None

    def topics(self) -> dict[str, set[int]]:
        try:
            if self.consumer is None:
                self.consumer = KafkaConsumer(**self.config)
            return {t: set(self.consumer.partitions_for_topic(t) or ()) for t in self.consumer.topics()}
        except KafkaError as exc:
            raise KafkaFailure(str(exc)) from exc

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
