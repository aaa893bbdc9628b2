"""Prometheus metrics of one gateway process (served at /metrics).

Most metrics are prometheus_client objects. The ones touched for every frame sent to
every client (lines and bytes sent, publish-to-send lag) are plain integers behind a
custom collector instead: at 50,000 frames a second the client library's locking and
label lookups cost more than the fan-out itself.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.fanout.lag import LAG_BUCKETS, lag_of

ACCESS_REASONS = frozenset({"unauthenticated", "origin", "host", "forbidden", "expired"})


class GatewayMetrics:
    """The gateway's counters and gauges, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.connections = Gauge("tailgate_gateway_connections", "Open WebSocket connections", registry=r)
        self.ready = Gauge(
            "tailgate_gateway_ready", "1 while /readyz answers 200 (Redis subscribed, not draining)", registry=r
        )
        self.reader_connected = Gauge(
            "tailgate_gateway_reader_connected", "1 while the live reader's Redis pub/sub connection is up", registry=r
        )
        self.subscriptions = Gauge("tailgate_gateway_subscriptions", "Viewers per stream", ["stream"], registry=r)
        self.lines_dropped = Counter(
            "tailgate_gateway_lines_dropped", "Lines dropped for slow clients", ["stream"], registry=r
        )
        self.queue_bytes = Gauge("tailgate_gateway_queue_bytes", "Bytes pending across all client queues", registry=r)
        self.queue_bytes_max = Gauge(
            "tailgate_gateway_queue_bytes_max", "Largest single client queue, bytes", registry=r
        )
        self.redis_reconnects = Counter("tailgate_gateway_redis_reconnects", "Redis pub/sub reconnects", registry=r)
        # Redis Cluster only (fanout/shards.py), labelled with the primary's host:port
        self.shard_connections = Gauge(
            "tailgate_gateway_redis_shard_connections", "Sharded pub/sub connections per primary", ["node"], registry=r
        )
        self.shard_subscriptions = Gauge(
            "tailgate_gateway_redis_shard_subscriptions", "Streams SSUBSCRIBEd per primary", ["node"], registry=r
        )
        self.shard_reconnects = Counter(
            "tailgate_gateway_redis_shard_reconnects", "Sharded pub/sub reconnects per primary", ["node"], registry=r
        )
        self.slow_closed = Counter(
            "tailgate_gateway_slow_clients_closed", "Clients closed (1013) for making no progress", registry=r
        )
        self.errors = Counter("tailgate_gateway_client_errors", "Error frames sent, by code", ["code"], registry=r)
        self.lines_in = Counter("tailgate_gateway_lines_in", "Lines received from Redis", registry=r)
        self.lines_filtered = Counter(
            "tailgate_gateway_filter_evaluations",
            "Live lines tested against a filter: once per line and distinct filter, however many viewers share it",
            registry=r,
        )
        self.repaired = Counter(
            "tailgate_gateway_lines_repaired",
            "Stored lines an older or foreign producer wrote, by what the gateway did: rewritten (made "
            "canonical: lone surrogates, NaN, Infinity) or unreadable (sent as a notice under the line's id)",
            ["how"],
            registry=r,
        )
        self.limited = Counter(
            "tailgate_gateway_limit_refusals",
            "Requests refused by an abuse limit (frame_size, subscriptions, backlog, pattern, rate, "
            "connections_per_user, connections_per_address, file_streams, file_streams_per_user, list_files)",
            ["limit"],
            registry=r,
        )
        self.access_refused = Counter(
            "tailgate_gateway_access_refusals",
            "Requests refused by access control (unauthenticated, origin, host, forbidden, expired)",
            ["reason"],
            registry=r,
        )
        self.salt_calls = Gauge(
            "tailgate_gateway_salt_calls", "Salt calls running, and waiting for a worker", ["state"], registry=r
        )
        self.handler_failures = Counter(
            "tailgate_gateway_handler_failures",
            "WebSocket connections closed with 1011 after an unexpected exception in open or on_message",
            ["where"],
            registry=r,
        )
        self.task_failures = Counter(
            "tailgate_gateway_task_failures",
            "Background tasks that failed (a supervised loop is restarted), by task",
            ["task"],
            registry=r,
        )
        self.hot = _HotPath()
        r.register(self.hot)
        self.sent = self.hot.sent
        self.sent_now = self.hot.sent_now

    def dropped(self, stream: str, lines: int) -> None:
        self.lines_dropped.labels(stream).inc(lines)

    def lines_repaired(self, how: str, lines: int) -> None:
        self.repaired.labels(how).inc(lines)

    def refused(self, why: str) -> None:
        """One refusal: an access reason (ACCESS_REASONS) or the abuse limit that refused it."""
        (self.access_refused if why in ACCESS_REASONS else self.limited).labels(why).inc()

    def task_failed(self, task: str) -> None:
        self.task_failures.labels(task).inc()

    def slow_client_closed(self) -> None:
        self.slow_closed.inc()

    def redis_reconnect(self) -> None:
        self.redis_reconnects.inc()

    def shard_reconnect(self, node: str) -> None:
        self.shard_reconnects.labels(node).inc()

    def shard_gauges(self, subscribed: dict[str, int]) -> None:
        """Per primary now connected: one connection, and its SSUBSCRIBEd streams."""
        self.shard_connections.clear()
        self.shard_subscriptions.clear()
        for node, streams in subscribed.items():
            self.shard_connections.labels(node).set(1)
            self.shard_subscriptions.labels(node).set(streams)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _HotPath(Collector):
    """Per-frame counters as plain ints, exported at scrape time."""

    def __init__(self) -> None:
        self.lines: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self.lag_counts = [0] * (len(LAG_BUCKETS) + 1)
        self.lag_sum = 0.0

    def sent(self, stream: str, lines: int, nbytes: int, published_ms: int) -> None:
        """A frame was handed to a client's socket (called per client and frame)."""
        self.lines[stream] = self.lines.get(stream, 0) + lines
        self.bytes[stream] = self.bytes.get(stream, 0) + nbytes
        if published_ms:
            bucket, seconds = lag_of(published_ms)
            self.lag_counts[bucket] += 1
            self.lag_sum += seconds

    def sent_now(self, stream: str, lines: int, nbytes: int, lag: tuple[int, float]) -> None:
        """`sent` for a shared batch whose lag was computed once for all clients."""
        self.lines[stream] = self.lines.get(stream, 0) + lines
        self.bytes[stream] = self.bytes.get(stream, 0) + nbytes
        self.lag_counts[lag[0]] += 1
        self.lag_sum += lag[1]

    def collect(self) -> Iterator[Metric]:
        lines = CounterMetricFamily("tailgate_gateway_lines_sent", "Lines sent to clients", labels=["stream"])
        sent = CounterMetricFamily("tailgate_gateway_bytes_sent", "Frame bytes sent to clients", labels=["stream"])
        for stream, n in self.lines.items():
            lines.add_metric([stream], n)
            sent.add_metric([stream], self.bytes[stream])
        buckets, total = [], 0
        for bound, n in zip((*LAG_BUCKETS, float("inf")), self.lag_counts, strict=True):
            total += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
        lag = HistogramMetricFamily(
            "tailgate_gateway_publish_to_send_seconds",
            "Time from the Redis publish of a batch to its hand-off to a client socket",
            buckets=buckets,
            sum_value=self.lag_sum,
        )
        yield from (lines, sent, lag)
