"""`Bridge`, the consume-and-publish loop of one bridge process.

poll Kafka -> decode, route and encode (bridge.batch) -> publish each partition's lines
atomically with its newest offset (wire.Publisher) -> poll again. Redis decides what was
already published, so a redelivery, a rebalance or a restart after SIGKILL doubles
nothing, and since a batch is published before the next poll, nothing is lost either.

Faults: when a publish fails (Redis down, or reconnected: see bridge.redislink), the
batch in hand is dropped and its partitions rewound and paused; the consumer keeps
polling (so it stays in its group) while the bridge retries reading its positions from
Redis with backoff; once Redis answers, every partition resumes just after the offset
Redis holds, so whatever Redis lost is fetched again and nothing is doubled; where Redis
holds no offset at all, the one committed to Kafka stands in (bridge.positions). Kafka
being unreachable only makes polls come back empty (the client reconnects by itself); a
partition whose log started over or was truncated is handled by bridge.positions.
SIGTERM (the `stop` event) ends the loop after the batch in hand has been published.

With Redis Sentinel (wire.connect) a failover is such a fault: the bridge asks the
sentinels where the master is every housekeeping turn (and after a step no replica
acknowledged), its connection to the old primary is made again to the new one, and the
positions are re-read there. With `redis.min_replicas_acked`, each publish step is
followed by WAIT, and its offsets are committed to Kafka only once a replica has them
(bridge.offsets).

The Kafka client is whichever `bridge.client` names, behind bridge.kafkaclient's
interface: nothing here depends on which.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from bridge.assign import GroupMember, MetadataWatcher, StaticAssigner, TopicSelection
from bridge.batch import Work, add_partition
from bridge.health import Health
from bridge.kafkaclient import KafkaClient, KafkaFailure, Record, TopicPartition, backend, check_security, connect
from bridge.metrics import BridgeMetrics
from bridge.offsets import OffsetCommits
from bridge.positions import Positions
from bridge.redislink import REDIS_ERRORS, SOCKET_TIMEOUT, RedisLink
from bridge.route import Router
from bridge.status import StatusServer
from bridge.worker import PublishWorker
from settings import Settings
from wire import Publisher, PublishPipe
from wire.connect import RedisTarget
from wire.names import StreamNameError

log = logging.getLogger(__name__)

POLL_MS = 100
HOUSEKEEPING = 1.0  # seconds between lag, connection and commit updates
KAFKA_PROBE = 5.0  # longest interval between metadata reads (they tell whether Kafka answers)
SHUTDOWN_COMMIT_MS = 1000  # the last commit's wait: SIGTERM must end the bridge within 5 s
CATCH_UP_WAIT_MS = 50  # a housekeeping turn's WAIT for offsets still unacknowledged (blocks the loop)


class Bridge:
    """One bridge process: consumer-group member or one instance of a static split."""

    def __init__(
        self, settings: Settings, stop: threading.Event | None = None, metrics: BridgeMetrics | None = None
    ) -> None:
        b = settings.bridge
        if b.instances < 1 or not 0 <= b.instance < b.instances:
            raise ValueError(f"bridge.instance must be in 0..{b.instances - 1} (instances: {b.instances})")
        if b.batch_max_lines < 1 or b.max_line_bytes < 256:
            raise ValueError("bridge.batch_max_lines must be >= 1 and bridge.max_line_bytes >= 256")
        r = settings.redis
        if r.min_replicas_acked < -1:
            raise ValueError("redis.min_replicas_acked must be a number of replicas, 0 (off) or -1 (by redis.mode)")
        if r.mode == "cluster" and r.min_replicas_acked > 0:
            # WAIT counts the replicas of the node it reaches: one command cannot cover a
            # step that wrote to several primaries.
            raise ValueError("redis.min_replicas_acked is not supported in cluster mode: set it to -1 or 0")
        if not 0 < r.replica_ack_timeout < SOCKET_TIMEOUT:
            raise ValueError(f"redis.replica_ack_timeout must be above 0 and below {SOCKET_TIMEOUT:g} s")
        self.settings = settings
        self.stop = stop or threading.Event()
        self.metrics = metrics or BridgeMetrics()
        self.router = Router(b)
        self.selection = TopicSelection(b, self.router)
        self.group = b.group_id
        target = RedisTarget.of(settings.redis)
        keys = target.keys(settings.redis.prefix)
        self.link = RedisLink(target, stop=self.stop)
        self.unacked_since: float | None = None  # the first of the steps no replica has acknowledged yet
        self.publishing = True  # the last publish went through
        self.publisher = Publisher(self.link.client, keys, settings.redis.history_maxlen)
        self.consumer: KafkaClient | None = None
        self.positions: Positions | None = None
        self.assigner: GroupMember | StaticAssigner | None = None
        self.worker: PublishWorker | None = None
        self.watcher: MetadataWatcher | None = None
        self.next_housekeeping = 0.0
        self.commits = OffsetCommits(b.commit_offsets)
        self.health = Health(self.metrics)
        self.status = StatusServer(self.metrics.registry, self.health.live, self.health.ready)
        self.metrics_port: int | None = None
        Positions.check_start_from(b.start_from)
        self.backend = backend(b.client)
        self.security = check_security(settings.kafka)

    # --- set-up -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect to Kafka (waiting for a broker to answer) and join the group or take
        this instance's static share. Raises ValueError for Kafka settings it refuses."""
        b = self.settings.bridge
        if b.metrics_port:
            self.metrics_port = self.status.start(b.metrics_host, b.metrics_port)
        self.consumer = connect(self.backend, self.settings, self.security, self.stop)
        if self.consumer is None:
            return
        self.positions = Positions(
            self.consumer, self.publisher, self.group, b.start_from, self.metrics, b.commit_offsets
        )
        # Steps go one behind another only on one node without WAIT: a cluster's step is
        # several pipelines (one per node, then the resume offsets), and WAIT must follow
        # its own step with nothing sent behind it.
        alone = self.publisher.keys.cluster or self.settings.redis.replicas_to_ack
        pipe = None if alone else PublishPipe(self.publisher)
        self.worker = PublishWorker(self._publish, self._published, pipe)
        self.watcher = MetadataWatcher(
            lambda: self.backend.open_metadata(self.settings.kafka, self.security),
            self.selection,
            min(b.refresh_interval, KAFKA_PROBE),
        ).start()
        if b.use_group:
            self.assigner = GroupMember(self.consumer, self.watcher, self._added, self._removed)
            log.info("bridge joining group %s for topics %s (%s)", self.group, self.selection.describe(), b.client)
        else:
            self.assigner = StaticAssigner(
                self.consumer, self.watcher, b.instance, b.instances, self._added, self._removed
            )
            log.info(
                "bridge instance %d of %d (static split) for topics %s (%s)",
                b.instance,
                b.instances,
                self.selection.describe(),
                b.client,
            )

    def _added(self, parts: list[TopicPartition]) -> None:
        assert self.positions is not None
        self.positions.added(parts)
        self._count_partitions()

    def _removed(self, parts: list[TopicPartition]) -> None:
        assert self.positions is not None
        self.positions.removed(parts)
        self.health.forget(parts)
        self._count_partitions()

    def _count_partitions(self) -> None:
        if self.consumer is not None:
            self.health.partitions = len(self.consumer.assignment())
            self.metrics.partitions.set(self.health.partitions)

    # --- the loop -----------------------------------------------------------------------

    def run(self) -> None:
        """Republish until `stop` is set; returns after the batch in hand is published."""
        if self.consumer is None and not self.stop.is_set():
            self.start()
        if self.consumer is None or self.positions is None:  # stopped before a broker answered
            self._shutdown()
            return
        delay = self.settings.bridge.retry_initial
        self.health.started = True
        try:
            while not self.stop.is_set():
                self.health.turned()
                if self.assigner is not None:
                    self.assigner.maintain()
                # A failed publish waits too, not only failed reads: a Redis that answers
                # reads but refuses writes (NOREPLICAS while a failover settles) must not be
                # tried again at poll speed. The wait shrinks once a publish went through.
                if self._take_back() or not self._resolve():
                    self._idle(delay)
                    delay = min(delay * 2, self.settings.bridge.retry_max)
                    continue
                if self.publishing:
                    delay = self.settings.bridge.retry_initial
                try:
                    polled = self.consumer.poll(POLL_MS)
                except KafkaFailure as exc:
                    log.warning("polling Kafka failed (%s); retrying", exc)
                    self.stop.wait(self.settings.bridge.retry_initial)
                    continue
                if polled:
                    self._deliver(self._build(polled))
                self._housekeeping()
        finally:
            self._shutdown()

    def _resolve(self) -> bool:
        """Read positions from Redis (or Kafka's committed offsets) for partitions that
        need them; False if Redis or Kafka failed."""
        assert self.positions is not None and self.worker is not None
        if self.positions.pending or self.positions.rechecks:
            # positions are read from Redis once everything handed over is in
            self.worker.flush()
            self._take_back()
        try:
            with self.link.resync():
                self.positions.resolve()
        except REDIS_ERRORS as exc:
            self._redis_failed(exc)
            return False
        except KafkaFailure as exc:
            log.warning("reading the offsets committed to Kafka failed (%s); the partitions wait", exc)
            return False
        self._redis_ok()
        return True

    def _build(self, polled: dict[TopicPartition, list[Record]]) -> Work:
        assert self.positions is not None
        work = Work()
        max_lines = self.settings.bridge.batch_max_lines
        for tp, records in polled.items():
            if not records:
                continue
            try:
                route = self.router.route(tp.topic)
            except StreamNameError as exc:
                log.error("dropping %d records of %s: %s", len(records), tp.topic, exc)
                work.errors["bad_topic"] += len(records)
                continue
            keep = self.positions.consumed(tp, records[0].offset, records[-1].offset)
            if keep is not None:  # the log started over or was truncated
                records = [r for r in records if r.offset >= keep]
                if not records:
                    continue
            add_partition(work, route, self.group, tp.topic, tp.partition, records, max_lines)
        work.resets = self.positions.take_lowered()
        return work

    def _deliver(self, work: Work) -> None:
        """Hand one poll's work to the publishing thread (waiting while it is a poll behind)."""
        assert self.worker is not None
        if not self.worker.submit(work):
            self._take_back([work])

    def _publish(self, work: Work) -> int:
        """On the publishing thread: lower the checkpoints of partitions whose log started
        over or was truncated, then publish every call of the work in one round trip.
        Returns the lines skipped as old."""
        assert self.positions is not None
        for tp in list(work.resets):
            self.positions.reset(tp, work.resets[tp])
            self.commits.moved((tp.topic, tp.partition), work.resets.pop(tp) + 1)
        _, skipped = self.publisher.publish_many(work.calls)
        work.acked = self._replicated()
        return skipped

    def _replicated(self) -> bool:
        """After a publish step: whether `redis.min_replicas_acked` replicas have everything
        written so far (WAIT, at most `redis.replica_ack_timeout`). When they do not, the
        step's offsets wait (bridge.offsets), and the sentinels are asked at once whether
        the master moved: a replica promoted away leaves the old primary without one."""
        conf = self.settings.redis
        wanted = conf.replicas_to_ack
        if not wanted:
            return True
        acked = int(self.link.client.wait(wanted, int(conf.replica_ack_timeout * 1000)))
        if acked >= wanted:
            if self.unacked_since is not None:
                log.info("a replica acknowledged again after %.1fs", time.monotonic() - self.unacked_since)
                self.unacked_since = None
            return True
        self.metrics.unacked_publishes.inc()
        if self.unacked_since is None:
            self.unacked_since = time.monotonic()
            log.warning(
                "%d of %d replicas acknowledged a publish step within %gs; its Kafka offsets wait until they do",
                acked,
                wanted,
                conf.replica_ack_timeout,
            )
        self.link.redis.follow(at_once=True)
        return False

    def _acked_since(self) -> None:
        """Offsets still waiting for a replica (their step's WAIT timed out): WAIT again,
        briefly, so that a partition that published nothing since does not keep its
        Kafka commit behind for good. The WAIT covers every step published before it."""
        held = self.commits.unacked_now()
        if not held:
            return
        wanted = self.settings.redis.replicas_to_ack
        try:
            if int(self.link.client.wait(wanted, CATCH_UP_WAIT_MS)) >= wanted:
                self.commits.acked(held)
        except REDIS_ERRORS as exc:
            log.debug("WAIT for held offsets failed: %s", exc)

    def _published(self, work: Work, skipped: int, seconds: float) -> None:
        self.metrics.publish_seconds.observe(seconds)
        self.metrics.record(work, skipped)
        if skipped:
            log.info("%d lines were already published (redelivered offsets); skipped", skipped)
        self.commits.published(work.spans, work.acked)
        self.publishing = True

    def _take_back(self, extra: list[Work] | None = None) -> bool:
        """After a failed publish: rewind every partition of the unpublished works to its
        oldest unpublished offset and pause everything until Redis is read again. False
        when there was nothing to take back."""
        assert self.worker is not None and self.positions is not None
        if self.worker.error is None and not extra:
            return False
        error, failed = self.worker.take_failed()
        self.publishing = False  # after take_failed: what the worker published before the failure is in
        failed += extra or []
        first: dict[TopicPartition, int] = {}
        for work in failed:
            self.positions.keep_lowered(work.resets)  # what _publish has not done yet
            for (topic, partition), (start, _, _, _) in work.spans.items():
                tp = TopicPartition(topic, partition)
                first[tp] = min(start, first.get(tp, start))
        for tp, offset in first.items():
            self.positions.rewind(tp, offset)
        self._redis_failed(error or redis.ConnectionError("publish failed"))
        return True

    # --- faults -------------------------------------------------------------------------

    def _redis_failed(self, exc: Exception) -> None:
        """Pause everything; each partition's position is read from Redis again before it
        goes on."""
        assert self.consumer is not None and self.positions is not None
        self.metrics.redis_errors.inc()
        self.positions.recheck(self.consumer.assignment())
        self.commits.forget_unacked()
        if self.health.redis_down:
            log.debug("Redis still failing: %s", exc)
            return
        self.health.redis_down = True
        self.metrics.redis_up.set(0)
        log.warning("Redis failed (%s): consumption paused; retrying with backoff", exc)

    def _redis_ok(self) -> None:
        self.metrics.redis_up.set(1)
        if self.health.redis_down:
            self.health.redis_down = False
            self.metrics.redis_reconnects.inc()
            log.info("Redis is back: positions re-read, consumption resumed")

    def _idle(self, seconds: float) -> None:
        """Wait while keeping the consumer alive in its group: every partition is paused,
        so polls return nothing (a record that still comes back is rewound)."""
        assert self.consumer is not None and self.positions is not None
        end = time.monotonic() + max(0.0, seconds)
        while True:
            self.health.turned()
            left = end - time.monotonic()
            if left <= 0 or self.stop.is_set():
                return
            try:
                polled = self.consumer.poll(int(min(left, 0.25) * 1000) or 1)
            except KafkaFailure as exc:
                log.debug("poll while paused failed: %s", exc)
                time.sleep(min(left, 0.25))
                continue
            for tp, records in polled.items():
                if records:
                    self.positions.rewind(tp, records[0].offset)
            self.positions.recheck(self.consumer.assignment())

    # --- housekeeping -------------------------------------------------------------------

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now < self.next_housekeeping:
            return
        self.next_housekeeping = now + HOUSEKEEPING
        assert self.consumer is not None and self.positions is not None and self.watcher is not None
        self.health.update_lag(self.consumer, self.positions.expected)
        self.health.watch_kafka(self.watcher)
        self.link.redis.follow()
        self._acked_since()
        self.commits.commit(self.consumer)

    def _shutdown(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
        if self.worker is not None and not self.worker.close(timeout=3.0):
            log.warning("stopping with lines unpublished (Redis failing); they are read again at the next start")
        if self.consumer is not None:
            self.commits.commit_now(self.consumer, SHUTDOWN_COMMIT_MS)
            try:
                self.consumer.close(1500)
            except KafkaFailure as exc:
                log.warning("closing the Kafka consumer: %s", exc)
        self.link.close()
        self.status.close()
        log.info("bridge stopped")
