"""The confluent-kafka backend of the bridge's Kafka client (`bridge.client:
confluent-kafka`: librdkafka, which fetches and parses in C on threads of its own); see
bridge.kafkaclient for the interface and its invariants.

librdkafka differs from what the interface promises in three ways, made good here:

* A partition cannot be positioned before it fetches: `seek` right after an assignment
  fails ("Erroneous state"), and the documented way is to give the offset in the
  assignment itself. So a partition the bridge is handed (group or static split) is
  *owned* but not given to librdkafka until it is resumed, by then with the position the
  bridge chose (Redis's checkpoint, Kafka's committed offset or `start_from`). Nothing
  is fetched from anywhere else, not even from the group's committed offset.
* A `seek` on a paused partition holds it back about a second after it resumes (a
  fetch backoff); such a seek is kept and made just after the `resume`.
* The group protocol is eager (librdkafka's range,roundrobin assignors, kafka-python's
  too: members of either backend can share a group), where assignments may only be set
  whole: starting a partition of a group member re-assigns the others at their
  positions.

`poll` takes what librdkafka has queued without waiting (`consume(n, 0)`) and waits
only for the first record when nothing is queued: `consume(n, timeout)` would wait for
`n` records or the whole timeout, adding up to a poll's wait to every line's latency.
A record of a partition paused meanwhile is not returned (pausing purges librdkafka's
queue, this only makes sure), and the partition goes on from it when resumed.

Callbacks (group changes, commit results, errors, librdkafka's log) run inside `poll`
on the caller's thread, as with kafka-python.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, KafkaException
from confluent_kafka import Consumer as RdConsumer
from confluent_kafka import TopicPartition as RdTopicPartition
from confluent_kafka.admin import AdminClient

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

log = logging.getLogger(__name__)
librdkafka_log = logging.getLogger("bridge.librdkafka")

CONNECT_TIMEOUT = 2.0  # seconds a broker has to answer at start (as kafka-python's api_version_auto_timeout_ms)
METADATA_TIMEOUT = 5.0
FETCH_QUEUE_BACKOFF_MS = 10


class RdRecord(NamedTuple):
    """A librdkafka message as the bridge reads it (bridge.kafkaclient.Record)."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


def connection_config(k: KafkaSettings, security: Security) -> dict[str, Any]:
    """librdkafka's settings for reaching the brokers: servers, client id, TLS and SASL."""
    config: dict[str, Any] = {
        "bootstrap.servers": k.bootstrap,
        "client.id": k.client_id,
        "security.protocol": security.protocol.lower(),
        "logger": librdkafka_log,
    }
    if security.tls:
        config["ssl.ca.location"] = security.cafile or "probe"  # probe: the system's CAs
        if security.certfile:
            config["ssl.certificate.location"] = security.certfile
            config["ssl.key.location"] = security.keyfile or security.certfile
        config["ssl.endpoint.identification.algorithm"] = "https" if security.check_hostname else "none"
    if security.sasl:
        config.update({"sasl.mechanism": security.mechanism, "sasl.username": security.username})
        config["sasl.password"] = security.password
    return config


def open_consumer(settings: Settings, security: Security) -> ConfluentClient:
    k, b = settings.kafka, settings.bridge
    client = ConfluentClient(k.max_poll_records)
    config = {
        **connection_config(k, security),
        "group.id": b.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",  # only when a log started over; see bridge.positions
        "enable.partition.eof": False,
        "fetch.wait.max.ms": k.fetch_max_wait_ms,
        "session.timeout.ms": k.session_timeout_ms,
        "heartbeat.interval.ms": k.heartbeat_interval_ms,
        # librdkafka refuses a poll interval (also the rebalance timeout) below the session timeout
        "max.poll.interval.ms": max(k.max_poll_interval_ms, k.session_timeout_ms),
        "socket.timeout.ms": k.request_timeout_ms,
        "topic.metadata.refresh.interval.ms": int(b.refresh_interval * 1000),
        # librdkafka leaves Nagle's algorithm on by default: with delayed ACKs a fetch
        # request can wait 40 ms to be sent
        "socket.nagle.disable": True,
        # once more than queued.min.messages (100,000) wait in its queue, librdkafka stops
        # fetching for this long (default 1 s): a bridge catching up stalls a second each time
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        "on_commit": client.committed_answer,
        "error_cb": client.client_error,
    }
    try:
        consumer = RdConsumer(config)
    except (KafkaException, ValueError, TypeError) as exc:
        raise ValueError(f"kafka settings: {exc}") from None
    client.consumer = consumer
    try:
        consumer.list_topics(timeout=CONNECT_TIMEOUT)
    except KafkaException as exc:
        consumer.poll(0)  # serves the error callbacks: they tell why
        reason = client.tls_failure
        client.close(1000)
        if reason:
            raise tls_refused(k.bootstrap, reason) from None
        raise NoBroker(str(exc)) from None
    return client


def open_metadata(kafka: KafkaSettings, security: Security) -> ConfluentMetadata:
    config = connection_config(kafka, security)
    config["client.id"] = f"{kafka.client_id}-metadata"
    config["socket.nagle.disable"] = True
    return ConfluentMetadata(AdminClient(config))


def _rd(tp: TopicPartition, offset: int = OFFSET_INVALID) -> RdTopicPartition:
    return RdTopicPartition(tp.topic, tp.partition, offset)


class ConfluentClient:
    """bridge.kafkaclient.KafkaClient over a confluent_kafka Consumer."""

    consumer: RdConsumer

    def __init__(self, max_records: int) -> None:
        self.max_records = max_records
        self.group = False  # subscribed: assignments change whole (eager protocol)
        self.added: Handler | None = None
        self.removed: Handler | None = None
        self.owned: set[TopicPartition] = set()  # what assignment() answers
        self.started: set[TopicPartition] = set()  # given to librdkafka
        self.paused_parts: set[TopicPartition] = set()
        self.start_at: dict[TopicPartition, int] = {}  # owned, not started: the position chosen
        self.seek_later: dict[TopicPartition, int] = {}  # started and paused: made just after resume
        self.began: dict[TopicPartition, int] = {}  # started: the last position given to librdkafka
        self.commit_failed: CommitFailed | None = None
        self.commits_waiting = 0
        self.sync_failure: str | None = None
        self.tls_failure: str | None = None
        self.closing = False
        self.reported: set[tuple[str, int, int]] = set()

    # --- which partitions, where ---------------------------------------------------------

    def subscribe(self, topics: list[str], added: Handler, removed: Handler) -> None:
        self.group, self.added, self.removed = True, added, removed
        try:
            self.consumer.subscribe(topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked)
        except KafkaException as exc:
            raise KafkaFailure(str(exc)) from exc

    def _assigned(self, consumer: RdConsumer, parts: list[RdTopicPartition]) -> None:
        if self.owned:  # eager: revoked first; if that was missed, every position is chosen again
            self._revoked(consumer, [])
        consumer.assign([])  # nothing is fetched before the bridge has chosen each position
        new = sorted({TopicPartition(p.topic, p.partition) for p in parts})
        self.owned.update(new)
        if self.added is not None and not self.closing:
            self.added(new)

    def _revoked(self, consumer: RdConsumer, parts: list[RdTopicPartition]) -> None:
        gone = sorted(self.owned)  # eager: every partition goes
        self._forget(gone)
        consumer.unassign()
        if self.removed is not None and not self.closing:
            self.removed(gone)

    def assign(self, parts: list[TopicPartition]) -> None:
        wanted = set(parts)
        gone = self.owned - wanted
        stopped = [_rd(tp) for tp in gone if tp in self.started]
        if stopped:
            self.consumer.incremental_unassign(stopped)
        self._forget(gone)
        self.owned = wanted

    def _forget(self, parts: Iterable[TopicPartition]) -> None:
        for tp in parts:
            self.owned.discard(tp)
            self.started.discard(tp)
            self.paused_parts.discard(tp)
            self.start_at.pop(tp, None)
            self.seek_later.pop(tp, None)
            self.began.pop(tp, None)

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    def pause(self, parts: Iterable[TopicPartition]) -> None:
        parts = set(parts) & self.owned
        self.paused_parts |= parts
        running = [_rd(tp) for tp in parts & self.started]
        if running:
            self.consumer.pause(running)

    def resume(self, parts: Iterable[TopicPartition]) -> None:
        parts = set(parts) & self.paused_parts
        self.paused_parts -= parts
        running = sorted(parts & self.started)
        if running:
            self.consumer.resume([_rd(tp) for tp in running])
        # the seeks kept after the resume: a seek just before it leaves the partition
        # waiting about a second before it fetches again
        for tp in running:
            if tp in self.seek_later:
                self._seek_now(tp, self.seek_later.pop(tp))
        self._start(sorted(parts - self.started))

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_parts)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self.owned:
            return
        if tp not in self.started:
            self.start_at[tp] = offset
        elif tp in self.paused_parts:
            self.seek_later[tp] = offset
        else:
            self._seek_now(tp, offset)

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.seek(tp, OFFSET_BEGINNING)

    def seek_to_end(self, tp: TopicPartition) -> None:
        self.seek(tp, OFFSET_END)

    def _seek_now(self, tp: TopicPartition, offset: int) -> None:
        try:
            self.consumer.seek(_rd(tp, offset))
            self.began[tp] = offset
        except KafkaException:  # not fetching yet: start it again at that offset
            self.started.discard(tp)
            self.start_at[tp] = offset
            if not self.group:
                self.consumer.incremental_unassign([_rd(tp)])
            self._start([tp])

    def _start(self, parts: list[TopicPartition]) -> None:
        """Give partitions to librdkafka at the positions chosen for them."""
        if not parts:
            return
        new = [_rd(tp, self.start_at.pop(tp, OFFSET_INVALID)) for tp in parts]
        if self.group:
            # an eager group member's assignment is set whole: the partitions already
            # running go on from the application's position (or where they began)
            running = sorted(self.started)
            now = self.consumer.position([_rd(tp) for tp in running]) if running else []
            keep = [p if p.offset >= 0 else _rd(tp, self.began[tp]) for tp, p in zip(running, now, strict=True)]
            self.consumer.assign(keep + new)
            still = [_rd(tp) for tp in running if tp in self.paused_parts]
            if still:
                self.consumer.pause(still)
        else:
            self.consumer.incremental_assign(new)
        for p in new:
            self.began[TopicPartition(p.topic, p.partition)] = p.offset
        self.started.update(parts)

    def highwater(self, tp: TopicPartition) -> int | None:
        if tp not in self.started:
            return None
        try:
            _, high = self.consumer.get_watermark_offsets(_rd(tp), cached=True)
        except KafkaException:
            return None
        return high if high >= 0 else None

    # --- records ------------------------------------------------------------------------

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Record]]:
        if len(self.started) + len(self.paused_parts) < len(self.owned):
            # assigned and never paused: read from where a seek put it, else where the
            # group's committed offset (or auto.offset.reset) says, as kafka-python does
            self._start(sorted(self.owned - self.started - self.paused_parts))
        consumer = self.consumer
        try:
            messages = consumer.consume(self.max_records, 0)
            if not messages:
                first = consumer.poll(timeout_ms / 1000)
                if first is None:
                    return {}
                messages = [first, *consumer.consume(self.max_records - 1, 0)] if self.max_records > 1 else [first]
        except KafkaException as exc:
            raise KafkaFailure(str(exc)) from exc
        # the hot loop: librdkafka hands a partition's messages over in runs, so the
        # partition is looked up once per run; tuple.__new__ skips RdRecord's Python __new__
        polled: dict[tuple[str, int], list[Record]] = {}
        new = tuple.__new__
        last_partition, last_topic = -1, ""
        records: list[Record] = []
        for m in messages:
            if m.error() is not None:
                self._failed_message(m)
                continue
            partition = m.partition()
            if partition != last_partition or m.topic() != last_topic:
                last_partition, last_topic = partition, m.topic()
                records = polled.setdefault((last_topic, partition), [])
            kind, ms = m.timestamp()
            records.append(new(RdRecord, (m.offset(), ms if kind else -1, m.key(), m.value())))
        out: dict[TopicPartition, list[Record]] = {}
        for part, got in polled.items():
            tp = TopicPartition(*part)
            if tp in self.started and tp not in self.paused_parts:
                out[tp] = got
            elif tp in self.paused_parts and tp in self.started:
                # paused meanwhile: it goes on from here when resumed
                self.seek_later.setdefault(tp, got[0].offset)
        return out

    def _failed_message(self, m: Any) -> None:
        err = m.error()
        key = (m.topic() or "", m.partition() or 0, err.code())
        if key in self.reported:
            log.debug("%s:%s: %s", m.topic(), m.partition(), err.str())
            return
        self.reported.add(key)
        log.warning("%s:%s: the Kafka client reports %s", m.topic(), m.partition(), err.str())

    # --- offsets committed to Kafka -------------------------------------------------------

    def committed(self, parts: list[TopicPartition], timeout_ms: int) -> dict[TopicPartition, int]:
        if not parts:
            return {}
        try:
            found = self.consumer.committed([_rd(tp) for tp in parts], timeout=timeout_ms / 1000)
        except KafkaException as exc:
            raise KafkaFailure(str(exc)) from exc
        return {TopicPartition(p.topic, p.partition): p.offset for p in found if p.error is None and p.offset >= 0}

    def commit_async(self, offsets: dict[TopicPartition, int], failed: CommitFailed) -> None:
        self.commit_failed = failed
        self._send(offsets)

    def commit(self, offsets: dict[TopicPartition, int], timeout_ms: int) -> None:
        running = [_rd(tp) for tp in self.started - self.paused_parts]
        if running:  # nothing is fetched while the answer is awaited
            self.consumer.pause(running)
        self.sync_failure = None
        self._send(offsets)
        deadline = time.monotonic() + timeout_ms / 1000
        while self.commits_waiting and (left := deadline - time.monotonic()) > 0:
            self.consumer.poll(min(left, 0.05))  # serves the commit callback
        if self.commits_waiting:
            raise KafkaFailure(f"no answer to the commit within {timeout_ms} ms")
        if self.sync_failure:
            raise KafkaFailure(self.sync_failure)

    def _send(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            self.consumer.commit(offsets=[_rd(tp, nxt) for tp, nxt in offsets.items()], asynchronous=True)
        except KafkaException as exc:
            raise KafkaFailure(str(exc)) from exc
        self.commits_waiting += 1

    def committed_answer(self, err: Any, parts: list[RdTopicPartition]) -> None:
        """librdkafka's commit callback (inside poll)."""
        self.commits_waiting = max(0, self.commits_waiting - 1)
        failed = {TopicPartition(p.topic, p.partition): p.offset for p in parts if err is not None or p.error}
        if not failed:
            return
        why = str(err if err is not None else next(p.error for p in parts if p.error))
        self.sync_failure = why
        if self.commit_failed is not None:
            self.commit_failed(failed, KafkaFailure(why))

    # --- the client itself ---------------------------------------------------------------

    def client_error(self, err: Any) -> None:
        """librdkafka's error callback (inside poll): connection trouble it retries by
        itself, logged by librdkafka as well; a broker certificate that does not verify
        is kept for the start-up error."""
        text = err.str()
        if "certificate verify failed" in text:
            self.tls_failure = f"CERTIFICATE_VERIFY_FAILED ({text})"
        if err.fatal():
            log.error("the Kafka client failed for good: %s", text)
        else:
            log.debug("Kafka client: %s", text)

    def close(self, timeout_ms: int) -> None:
        # librdkafka's close waits for the group to be left, up to the session timeout
        # with no broker: done on a thread of its own so that a stop keeps its deadline
        self.closing = True
        closer = threading.Thread(target=self._close, name="bridge-kafka-close", daemon=True)
        closer.start()
        closer.join(timeout_ms / 1000)
        if closer.is_alive():
            log.warning("the Kafka consumer did not close within %d ms; leaving it", timeout_ms)

    def _close(self) -> None:
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("closing the Kafka consumer: %s", exc)


class ConfluentMetadata:
    """bridge.kafkaclient.MetadataClient over a librdkafka admin client."""

    def __init__(self, admin: AdminClient) -> None:
        self.admin = admin

    def topics(self) -> dict[str, set[int]]:
        try:
            found = self.admin.list_topics(timeout=METADATA_TIMEOUT)
        except KafkaException as exc:
            raise KafkaFailure(str(exc)) from exc
        finally:
            self.admin.poll(0)  # serves librdkafka's log
        return {name: set(t.partitions) for name, t in found.topics.items() if t.error is None}

    def close(self) -> None:
        self.admin.poll(0)
