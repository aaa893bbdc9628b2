"""Prometheus metrics of one gateway process (served at /metrics)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    """The gateway's counters and gauges, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.connections = Gauge("tailgate_gateway_connections", "Open WebSocket connections", registry=r)
        self.subscriptions = Gauge("tailgate_gateway_subscriptions", "Viewers per stream", ["stream"], registry=r)
        self.lines_sent = Counter("tailgate_gateway_lines_sent", "Lines sent to clients", ["stream"], registry=r)
        self.bytes_sent = Counter("tailgate_gateway_bytes_sent", "Frame bytes sent to clients", ["stream"], registry=r)
        self.lines_dropped = Counter(
            "tailgate_gateway_lines_dropped", "Lines dropped for slow clients", ["stream"], registry=r
        )
        self.queue_bytes = Gauge("tailgate_gateway_queue_bytes", "Bytes pending across all client queues", registry=r)
        self.queue_bytes_max = Gauge(
            "tailgate_gateway_queue_bytes_max", "Largest single client queue, bytes", registry=r
        )
        self.lag = Histogram(
            "tailgate_gateway_publish_to_send_seconds",
            "Time from the Redis publish of a batch to its hand-off to a client socket",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.redis_reconnects = Counter("tailgate_gateway_redis_reconnects", "Redis pub/sub reconnects", registry=r)
        self.slow_closed = Counter(
            "tailgate_gateway_slow_clients_closed", "Clients closed (1013) for making no progress", registry=r
        )
        self.errors = Counter("tailgate_gateway_client_errors", "Error frames sent, by code", ["code"], registry=r)
        self.lines_in = Counter("tailgate_gateway_lines_in", "Lines received from Redis", registry=r)
        self._sent_children: dict[str, tuple[Counter, Counter]] = {}

    def sent(self, stream: str, lines: int, nbytes: int, published_ms: int) -> None:
        """A frame was handed to a client's socket. Called per client and frame, so the
        labelled children are cached per stream instead of looked up each time."""
        children = self._sent_children.get(stream)
        if children is None:
            children = self._sent_children[stream] = (self.lines_sent.labels(stream), self.bytes_sent.labels(stream))
        children[0].inc(lines)
        children[1].inc(nbytes)
        if published_ms:
            # A line id's first part is the publishing XADD's time in ms (Redis clock).
            self.lag.observe(max(0.0, time.time() - published_ms / 1000.0))

    def dropped(self, stream: str, lines: int) -> None:
        self.lines_dropped.labels(stream).inc(lines)

    def redis_reconnect(self) -> None:
        self.redis_reconnects.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
