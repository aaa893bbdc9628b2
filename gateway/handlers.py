"""HTTP and WebSocket handlers. Dependencies arrive through `initialize()`, never globals."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import tornado.iostream
import tornado.web
import tornado.websocket

from gateway.filters import FilterError, compile_filter
from gateway.frames import Ping, ProtocolError, Subscribe, Unsubscribe, error_frame, parse_command
from gateway.metrics import GatewayMetrics
from gateway.session import Session
from gateway.subscriber import Subscriber, Unavailable
from gateway.subscriptions import Subscriptions
from settings import GatewaySettings

log = logging.getLogger(__name__)


class TailSocket(tornado.websocket.WebSocketHandler):
    """`/ws`: one client. Frames are handled one at a time, in order: Tornado does not
    read the next frame until `on_message` returns, so a subscribe completes (history
    included) before the next command is looked at."""

    def initialize(self, subscriptions: Subscriptions, settings: GatewaySettings, metrics: GatewayMetrics) -> None:
        self.subscriptions = subscriptions
        self.conf = settings
        self.metrics = metrics
        self.session: Session | None = None

    def check_origin(self, origin: str) -> bool:
        return super().check_origin(origin)

    def open(self) -> None:
        self.session = Session(
            self._send,
            self._close,
            self.conf.max_queue_bytes,
            self.conf.slow_client_timeout,
            self.metrics,
            peer=self.request.remote_ip or "",
            closed_errors=(tornado.websocket.WebSocketClosedError, tornado.iostream.StreamClosedError, OSError),
        )
        self.subscriptions.join(self.session)
        self.metrics.connections.inc()

    def get_compression_options(self) -> None:
        """No permessage-deflate: it would make every client's bytes different, and the
        gateway's fan-out writes the same pre-framed bytes to every socket."""
        return None

    def _send(self, data: bytes, wire: bytes | None) -> Any:
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            raise tornado.websocket.WebSocketClosedError()
        if wire is None:
            return self.write_message(data)
        # `wire` is already a complete WebSocket frame, shared by every viewer of the
        # batch. When nothing is buffered, send it straight to the socket: Tornado's
        # buffering costs more than the system call. Whatever the socket does not take
        # goes through the stream, which keeps the order.
        stream = conn.stream  # type: ignore[attr-defined]
        if not stream.writing() and type(stream) is tornado.iostream.IOStream:
            try:
                sent = stream.socket.send(wire)
            except BlockingIOError:
                sent = 0
            if sent == len(wire):
                return None
            wire = wire[sent:]
        return stream.write(wire)

    def _close(self, code: int, reason: str) -> None:
        self.close(code, reason)

    async def on_message(self, message: str | bytes) -> None:
        session = self.session
        if session is None or session.closed:
            return
        try:
            command = parse_command(message, self.conf.max_backlog, self.conf.max_pattern_chars)
            if isinstance(command, Ping):
                session.control({"type": "pong"})
            elif isinstance(command, Unsubscribe):
                name = command.stream.name
                await self.subscriptions.unsubscribe(session, name)
                session.control({"type": "unsubscribed", "stream": name})
            elif isinstance(command, Subscribe):
                await self._subscribe(session, command)
        except ProtocolError as exc:
            self.metrics.errors.labels(exc.code).inc()
            session.send_raw(error_frame(exc.code, exc.message, exc.stream))

    async def _subscribe(self, session: Session, command: Subscribe) -> None:
        name = command.stream.name
        if name not in session.subs and len(session.subs) >= self.conf.max_subscriptions:
            raise ProtocolError(
                "too_large", f"at most {self.conf.max_subscriptions} subscriptions per connection", name
            )
        try:
            line_filter = compile_filter(command.keyword, command.regex, command.ignore_case)
        except FilterError as exc:
            raise ProtocolError("bad_request", str(exc), name) from None
        try:
            await self.subscriptions.subscribe(session, name, line_filter, command.backlog, command.since)
        except Unavailable as exc:
            log.warning("subscribe %s for %s: redis unavailable: %s", name, session.peer, exc)
            raise ProtocolError("unavailable", "redis is unavailable; retry shortly", name) from None

    def on_close(self) -> None:
        session = self.session
        if session is None:
            return
        self.session = None
        session.closed = True
        self.metrics.connections.dec()
        task = asyncio.get_running_loop().create_task(self.subscriptions.leave(session))
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("cleanup of a closed session failed", exc_info=task.exception())


class HealthHandler(tornado.web.RequestHandler):
    """`/healthz`: the process is up and its event loop answers."""

    def get(self) -> None:
        self.write({"status": "ok"})


class ReadyHandler(tornado.web.RequestHandler):
    """`/readyz`: connected to Redis with every channel subscribed (a load balancer's check)."""

    def initialize(self, subscriber: Subscriber, draining: Any) -> None:
        self.subscriber = subscriber
        self.draining = draining

    def get(self) -> None:
        if self.draining():
            self.set_status(503)
            self.write({"status": "draining"})
        elif not self.subscriber.ready:
            self.set_status(503)
            self.write({"status": "redis unavailable" if not self.subscriber.connected else "subscribing"})
        else:
            self.write({"status": "ready"})


class MetricsHandler(tornado.web.RequestHandler):
    """`/metrics`: Prometheus text format."""

    def initialize(self, metrics: GatewayMetrics, refresh: Any) -> None:
        self.metrics = metrics
        self.refresh = refresh

    def get(self) -> None:
        self.refresh()
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.write(self.metrics.render())


class StreamsHandler(tornado.web.RequestHandler):
    """`GET /api/streams`: the streams known, with their recent line rates."""

    def initialize(self, catalog: Any) -> None:
        self.catalog = catalog

    async def get(self) -> None:
        streams = await self.catalog.list()
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"streams": streams}))


class ConsoleFileHandler(tornado.web.StaticFileHandler):
    """The console's files (`/`, `/static/...`). Browsers revalidate them on every load
    (a cheap 304 by ETag), so after an upgrade nobody runs a mix of old and new modules."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")
