"""Assembles the gateway (hub, Redis shells, handlers) and runs it until SIGTERM/SIGINT.

Shutdown drains: stop accepting, report not ready, close every client with 1001 (going
away) so it reconnects to another replica and resumes with `since`, then exit.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis
import tornado.httpserver
import tornado.web

from gateway.access import install_redaction
from gateway.catalog import Catalog
from gateway.guard import Guard
from gateway.handlers import (
    ConsoleFileHandler,
    HealthHandler,
    MetricsHandler,
    ReadyHandler,
    StreamsHandler,
)
from gateway.history import History
from gateway.hub import Hub
from gateway.metrics import GatewayMetrics
from gateway.minions import MinionFilesHandler, MinionsHandler
from gateway.subscriber import Subscriber
from gateway.subscriptions import Subscriptions
from gateway.tails import build_tails
from gateway.websocket import TailSocket
from settings import Settings
from wire import Keys

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
SWEEP_SECONDS = 1.0


@dataclass
class Gateway:
    """Everything one gateway process holds."""

    settings: Settings
    hub: Hub = field(default_factory=Hub)
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    draining: bool = False
    _lines_in_reported: int = 0

    def __post_init__(self) -> None:
        keys = Keys(self.settings.redis.prefix)
        self.commands = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(
                self.settings.redis.url, max_connections=1, timeout=10, client_name="tailgate-gateway-cmd"
            )
        )
        self.history = History(self.commands, keys, self.settings.redis.history_maxlen)
        self.subscriber = Subscriber(
            self.settings.redis.url,
            keys,
            self.hub,
            self._on_lost,
            self._on_reconnected,
            self.metrics,
            coalesce=self.settings.gateway.coalesce_ms / 1000.0,
        )
        self.tails = build_tails(self.commands, keys, self.hub, self.settings)
        self.subscriptions = Subscriptions(self.hub, self.subscriber, self.history, self.tails)
        conf = self.settings.gateway
        topics = self.settings.bridge.topics
        self.catalog = Catalog(self.commands, keys, topics, conf.catalog_window, conf.rate_interval)
        self.guard = Guard(self.settings.auth, self.metrics)
        install_redaction()

    def _on_lost(self) -> None:
        self.subscriptions.hold_all()

    async def _on_reconnected(self) -> None:
        await self.subscriptions.resume_all()

    def refresh_gauges(self) -> None:
        """Bring gauges (and the hub's plain counters) up to date before a scrape."""
        self.metrics.lines_in.inc(self.hub.lines_in - self._lines_in_reported)
        self._lines_in_reported = self.hub.lines_in
        sessions = self.subscriptions.sessions
        self.metrics.queue_bytes.set(sum(s.queued_bytes for s in sessions))
        self.metrics.queue_bytes_max.set(max((s.queued_bytes for s in sessions), default=0))
        self.metrics.subscriptions.clear()
        for stream, viewers in self.hub.viewers().items():
            self.metrics.subscriptions.labels(stream).set(viewers)

    def application(self) -> tornado.web.Application:
        conf = self.settings.gateway
        guard = self.guard
        return tornado.web.Application(
            [
                (
                    r"/ws",
                    TailSocket,
                    {"subscriptions": self.subscriptions, "settings": conf, "metrics": self.metrics, "guard": guard},
                ),
                (r"/healthz", HealthHandler),
                (r"/readyz", ReadyHandler, {"subscriber": self.subscriber, "draining": lambda: self.draining}),
                (r"/metrics", MetricsHandler, {"metrics": self.metrics, "refresh": self.refresh_gauges}),
                (r"/api/streams", StreamsHandler, {"catalog": self.catalog, "guard": guard}),
                (r"/api/minions", MinionsHandler, {"minions": self.tails.minions, "guard": guard}),
                (
                    r"/api/minions/([^/]+)/files",
                    MinionFilesHandler,
                    {
                        "minions": self.tails.minions,
                        "salt": self.tails.salt,
                        "allowlist": conf.file_allowlist,
                        "guard": guard,
                    },
                ),
                (
                    r"/()",
                    ConsoleFileHandler,
                    {"path": str(STATIC_DIR), "default_filename": "index.html", "guard": guard},
                ),
                (r"/static/(.*)", ConsoleFileHandler, {"path": str(STATIC_DIR)}),
            ],
            websocket_ping_interval=conf.ping_interval,
            websocket_ping_timeout=conf.ping_timeout,
            websocket_max_message_size=conf.max_frame_bytes,
        )

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            for session in list(self.subscriptions.sessions):
                session.check_stalled()

    async def serve(self, ready: asyncio.Event | None = None) -> None:
        """Run until SIGTERM or SIGINT, then drain and return."""
        conf = self.settings.gateway
        server = tornado.httpserver.HTTPServer(self.application(), xheaders=False)
        server.listen(conf.port, conf.host)
        log.info("gateway listening on http://%s:%d/", conf.host, conf.port)
        reader = asyncio.create_task(self.subscriber.run())
        sweeper = asyncio.create_task(self._sweep())
        rates = asyncio.create_task(self.catalog.run())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if ready is not None:
            ready.set()
        await stop.wait()
        await self.drain(server)
        # Stop the subscriber before cancelling its reader: on Python 3.11 a cancel that
        # lands as a read completes is swallowed by asyncio.wait_for, and the reader would
        # go on forever; once stopping, it ends on its own when the connection closes.
        await self.subscriber.stop()
        for task in (reader, sweeper, rates):
            task.cancel()
        await asyncio.gather(reader, sweeper, rates, return_exceptions=True)
        await self.tails.close()
        await self.commands.aclose()

    async def drain(self, server: tornado.httpserver.HTTPServer) -> None:
        """Stop accepting, close every client with 1001, wait briefly for them to go."""
        started = time.monotonic()
        self.draining = True
        server.stop()
        sessions = list(self.subscriptions.sessions)
        log.info("draining: closing %d clients with 1001", len(sessions))
        for session in sessions:
            session.close(1001, "gateway shutting down")
        try:
            await asyncio.wait_for(self.subscriptions.all_left.wait(), self.settings.gateway.drain_timeout)
        except TimeoutError:
            log.warning("drain timed out with %d clients still open", len(self.subscriptions.sessions))
        log.info("drained in %.2fs", time.monotonic() - started)
