"""Prometheus metrics of one gateway process (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from wire.envelope import LineId

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
        self.errors = Counter("tailgate_gateway_client_errors", "Error frames sent, by code", ["code"], registry=r)
        self.lines_in = Counter("tailgate_gateway_lines_in", "Lines received from Redis", registry=r)

    def sent(self, stream: str, lines: int, nbytes: int) -> None:
        self.lines_sent.labels(stream).inc(lines)
        self.bytes_sent.labels(stream).inc(nbytes)

    def dropped(self, stream: str, lines: int) -> None:
        self.lines_dropped.labels(stream).inc(lines)

    def observe_lag(self, newest: LineId, now: float) -> None:
        """Lag from a Redis stream id (milliseconds of the publishing XADD) to `now`."""
        self.lag.observe(max(0.0, now - newest[0] / 1000.0))

    def redis_reconnect(self) -> None:
        self.redis_reconnects.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
