"""Wires the gateway together (fanout, access, tails, http) and runs it until SIGTERM/SIGINT.

The only module that knows every package: it builds each part once and hands it to the
others through constructors and handlers' `initialize()`. One `Gateway` is one process:
alone on its port, or one of `--workers N` on a socket its supervisor bound
(`gateway.workers`). Shutdown drains in an order a load balancer can follow: `/readyz`
answers 503 at once while clients go on being served for `gateway.drain_grace` (the
balancer's health checks take the replica out meanwhile), then it stops accepting,
closes every client with 1001 (going away) so it reconnects to another replica and
resumes with `since`, and exits.
The package map and the import rule: docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any

import redis.asyncio as aioredis
import tornado.httpserver

from gateway.access.audit import install_redaction
from gateway.access.guard import Guard
from gateway.catalog import Catalog
from gateway.fanout.history import History
from gateway.fanout.hub import Hub
from gateway.fanout.live import LiveReader
from gateway.fanout.orchestrator import Orchestrator
from gateway.fanout.shards import ShardedReader
from gateway.fanout.stored import StoredLines
from gateway.http.api import MinionFilesHandler, MinionsHandler, StreamsHandler
from gateway.http.console import STATIC_DIR, CodesHandler, ConsoleFileHandler
from gateway.http.edge import EdgeApplication, make_server
from gateway.http.probes import HealthHandler, MetricsHandler, ReadyHandler
from gateway.http.websocket import TailSocket
from gateway.metrics import GatewayMetrics
from gateway.tails.lifecycle import Tails
from gateway.tails.minions import Minions
from gateway.tails.salt import LocalSalt
from gateway.tails.saltapi import make_salt_client
from gateway.tasks import Tasks
from gateway.workers import WorkerLink
from settings import Settings
from wire import Keys
from wire.codes import CloseCode
from wire.connect import AsyncConnector, RedisTarget

log = logging.getLogger(__name__)

SWEEP_SECONDS = 1.0
ACCEPT_WAIT = 10.0  # at most, for a worker's Redis connection before it takes connections


class Gateway:
    """Everything one gateway process holds."""

    def __init__(self, settings: Settings, worker: WorkerLink | None = None) -> None:
        self.settings = settings
        self.worker = worker  # None: alone on its port
        self.draining = False
        self._lines_in_reported = 0
        self._lines_filtered_reported = 0
        self.metrics = GatewayMetrics()
        self.tasks = Tasks(self.metrics)
        stored = StoredLines(self.metrics)
        self.hub = Hub(stored)
        redis, conf = settings.redis, settings.gateway
        # Every Redis connection comes from one connector: one node, whichever node the
        # sentinels name master (followed across failovers), or a Redis Cluster (wire.connect).
        self.redis = AsyncConnector(RedisTarget.of(redis))
        target = self.redis.target
        keys = target.keys(redis.prefix)
        self.commands, self.history_client = self._clients()
        self.history = History(
            self.history_client, keys, redis.history_maxlen, conf.max_history_bytes, stored, conf.history_connections
        )
        hooks = (self.hub, self._on_lost, self._on_reconnected, self.tasks, self.metrics)
        coalesce = conf.coalesce_ms / 1000.0
        # Redis Cluster: one sharded pub/sub connection per primary (fanout/shards.py).
        self.live: LiveReader | ShardedReader = (
            ShardedReader(self.redis, keys, *hooks, coalesce=coalesce)
            if target.cluster
            else LiveReader(self.redis, keys, *hooks, coalesce=coalesce)
        )
        self.guard = Guard(settings.auth, self.metrics, conf, settings.salt)
        self.tails = self._file_tails(keys)
        self.orchestrator = Orchestrator(self.hub, self.live, self.history, self.tails)
        self.catalog = Catalog(self.commands, keys, settings.bridge.topics, conf.catalog_window, conf.rate_interval)
        install_redaction()

    def _clients(self) -> tuple[aioredis.Redis, aioredis.Redis]:
        """The command connection, and the history reads' own connections: a long read must
        not delay file-stream leases or the catalogue on the command connection."""
        conf = self.settings.gateway
        timeouts = {"socket_timeout": 10, "socket_connect_timeout": 3}
        if self.redis.target.cluster:
            # each command goes to its slot's owner (MOVED/ASK followed); History itself keeps
            # its reads to history_connections at once (the per-node pools do not wait)
            commands = self.redis.client("tailgate-gateway-cmd")
            history = self.redis.client(
                "tailgate-gateway-history", max_connections=conf.history_connections, **timeouts
            )
            return commands, history
        pool = aioredis.BlockingConnectionPool
        commands = self.redis.client("tailgate-gateway-cmd", pool, max_connections=1, timeout=10)
        history = self.redis.client(
            "tailgate-gateway-history", pool, max_connections=conf.history_connections, timeout=10, **timeouts
        )
        return commands, history

    def _file_tails(self, keys: Keys) -> Tails:
        """The file-stream side for `salt.mode` (with no Salt client and no minions when off)."""
        conf = self.settings.salt
        salt = make_salt_client(conf)
        self.salt_slots = salt.slots if salt is not None else None
        minions = Minions(salt, conf.minions_ttl) if salt is not None else None
        if isinstance(salt, LocalSalt) and os.path.exists(conf.master_config):
            salt.warm()  # import salt and build a LocalClient now, not on the first viewer's clock
        # Status frames reach viewers through the orchestrator, built just after.
        return Tails(
            self.commands,
            keys,
            lambda stream, frame: self.orchestrator.notify(stream, frame),
            self.tasks,
            salt,
            minions,
            conf,
            self.settings.gateway.file_allowlist,
            self.guard.caller_of,
        )

    def _on_lost(self) -> None:
        self.orchestrator.hold_all()

    async def _on_reconnected(self) -> None:
        await self.orchestrator.resume_all()

    def refresh_gauges(self) -> None:
        """Bring gauges (and the hub's plain counters) up to date before a scrape."""
        self.metrics.ready.set(int(self.live.ready and not self.draining))
        self.metrics.reader_connected.set(int(self.live.connected))
        if isinstance(self.live, ShardedReader):
            self.metrics.shard_gauges({self.live.node_name(n): len(s) for n, s in self.live.subscribed.items()})
        self.metrics.lines_in.inc(self.hub.lines_in - self._lines_in_reported)
        self._lines_in_reported = self.hub.lines_in
        self.metrics.lines_filtered.inc(self.hub.lines_filtered - self._lines_filtered_reported)
        self._lines_filtered_reported = self.hub.lines_filtered
        sessions = self.orchestrator.sessions
        self.metrics.queue_bytes.set(sum(s.queued_bytes for s in sessions))
        self.metrics.queue_bytes_max.set(max((s.queued_bytes for s in sessions), default=0))
        self.metrics.subscriptions.clear()
        for stream, viewers in self.hub.viewers().items():
            self.metrics.subscriptions.labels(stream).set(viewers)
        if self.salt_slots is not None:
            self.metrics.salt_calls.labels("running").set(self.salt_slots.busy)
            self.metrics.salt_calls.labels("waiting").set(len(self.salt_slots.waiting))

    async def own_metrics(self) -> bytes:
        """This process's exposition."""
        self.refresh_gauges()
        return self.metrics.render()

    def application(self) -> EdgeApplication:
        conf = self.settings.gateway
        guard = self.guard
        socket: dict[str, Any] = {
            "orchestrator": self.orchestrator,
            "settings": conf,
            "metrics": self.metrics,
            "guard": guard,
            "tasks": self.tasks,
            "minions": self.tails.minions,
        }
        files = {"minions": self.tails.minions, "salt": self.tails.salt, "allowlist": conf.file_allowlist}
        # With --workers, /metrics is the sum over every worker, whichever one answers.
        exposition = self.worker.fleet_metrics if self.worker is not None else self.own_metrics
        return EdgeApplication(
            guard,
            [
                (r"/ws", TailSocket, socket),
                (r"/healthz", HealthHandler),
                (
                    r"/readyz",
                    ReadyHandler,
                    {"live": self.live, "draining": lambda: self.draining, "tasks": self.tasks},
                ),
                (r"/metrics", MetricsHandler, {"exposition": exposition}),
                (r"/api/streams", StreamsHandler, {"catalog": self.catalog, "guard": guard}),
                (r"/api/minions", MinionsHandler, {"minions": self.tails.minions, "guard": guard}),
                (r"/api/minions/([^/]+)/files", MinionFilesHandler, {**files, "guard": guard}),
                (
                    r"/()",
                    ConsoleFileHandler,
                    {"path": str(STATIC_DIR), "default_filename": "index.html", "guard": guard},
                ),
                (r"/static/codes\.js", CodesHandler),
                (r"/static/(.*)", ConsoleFileHandler, {"path": str(STATIC_DIR)}),
            ],
            websocket_ping_interval=conf.ping_interval,
            websocket_ping_timeout=conf.ping_timeout,
            websocket_max_message_size=conf.max_frame_bytes,
        )

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            for session in list(self.orchestrator.sessions):
                session.check_stalled()

    async def serve(self, ready: asyncio.Event | None = None) -> None:
        """Run until SIGTERM or SIGINT, then drain and return."""
        conf = self.settings.gateway
        server = make_server(self.application(), conf)
        if self.worker is None:
            server.listen(conf.port, conf.host)
            log.info("gateway listening on http://%s:%d/", conf.host, conf.port)
        else:
            await self.worker.serve_own(self.own_metrics)
            self.tasks.supervise("supervisor-watch", self.worker.watch_parent)
            self.tasks.spawn(self._accept_once_ready(server, self.worker), "accept-once-ready")
        self.tasks.supervise("live-reader", self.live.run, ready=lambda: self.live.ready)
        self.tasks.supervise("slow-client-sweep", self._sweep)
        self.tasks.supervise("stream-rates", self.catalog.run)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)  # once draining, a repeated signal changes nothing
        if ready is not None:
            ready.set()
        await stop.wait()
        await self.drain(server)
        # Stop the live reader before cancelling it: on Python 3.11 a cancel that lands as
        # a read completes is swallowed by asyncio.wait_for, and the reader would go on
        # forever; once stopping, it ends on its own when the connection closes.
        await self.live.stop()
        await self.tasks.close()
        await self.tails.close()
        await self.commands.aclose()
        await self.history_client.aclose()
        await self.redis.aclose()
        if self.worker is not None:
            self.worker.close()

    async def _accept_once_ready(self, server: tornado.httpserver.HTTPServer, worker: WorkerLink) -> None:
        """A worker takes connections from the shared socket only once it is connected to
        Redis (or after ACCEPT_WAIT, as a lone gateway would, answering `unavailable`):
        a balancer's `/readyz` reaches whichever worker accepts, so it cannot keep viewers
        away from one still starting (after a restart, say); the others take them meanwhile."""
        deadline = time.monotonic() + ACCEPT_WAIT
        # The reader offers no event to wait on; a look every 20 ms until it connects costs nothing.
        while not self.live.ready and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if self.draining:
            return
        if not self.live.ready:
            log.warning("worker %d: no Redis after %.0fs; accepting viewers anyway", worker.index, ACCEPT_WAIT)
        server.add_sockets(worker.sockets())
        log.info("worker %d serving", worker.index)

    async def drain(self, server: tornado.httpserver.HTTPServer) -> None:
        """Report not ready and go on serving for `drain_grace`; then stop accepting, close
        every client with 1001 and wait briefly for them to go."""
        started = time.monotonic()
        conf = self.settings.gateway
        # Not ready first, and for the whole grace: a balancer checking /readyz stops
        # sending new viewers here while the ones already here are still served, so when
        # they are closed below they reconnect to a replica the balancer still uses.
        self.draining = True
        if conf.drain_grace > 0:
            log.info(
                "draining: /readyz answers 503; serving %d clients %.1fs more",
                len(self.orchestrator.sessions),
                conf.drain_grace,
            )
            await asyncio.sleep(conf.drain_grace)
        server.stop()
        sessions = list(self.orchestrator.sessions)
        log.info("draining: closing %d clients with 1001", len(sessions))
        for session in sessions:
            session.close(CloseCode.GOING_AWAY, "gateway shutting down")
        try:
            await asyncio.wait_for(self.orchestrator.all_left.wait(), conf.drain_timeout)
        except TimeoutError:
            log.warning("drain timed out with %d clients still open", len(self.orchestrator.sessions))
        log.info("drained in %.2fs", time.monotonic() - started)
