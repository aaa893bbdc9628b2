"""HTTP handlers: health, readiness, metrics, the stream catalogue and the console files.
Dependencies arrive through `initialize()`, never globals."""

from __future__ import annotations

import json
import logging
from typing import Any

import tornado.iostream
import tornado.web
import tornado.websocket

from gateway.auth import AuthError
from gateway.guard import ApiAccess, Guard
from gateway.metrics import GatewayMetrics
from gateway.subscriber import Subscriber

log = logging.getLogger(__name__)


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


class StreamsHandler(ApiAccess):
    """`GET /api/streams`: the streams known that the caller may open, with their recent line rates."""

    def initialize(self, catalog: Any, guard: Guard | None = None) -> None:
        self.catalog = catalog
        self.guard = guard

    async def get(self) -> None:
        streams = await self.catalog.list()
        grants = self.grants
        if not grants.unrestricted:
            streams = [s for s in streams if grants.allows_name(s["stream"])]
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"streams": streams}))


class ConsoleFileHandler(tornado.web.StaticFileHandler):
    """The console's files (`/`, `/static/...`). Browsers revalidate them on every load
    (a cheap 304 by ETag), so after an upgrade nobody runs a mix of old and new modules.

    Opened with a valid ``?token=``, the page also sets the token cookie (HttpOnly,
    SameSite=Strict, expiring with the token), so a reload without the query string
    still works and page scripts never hold the cookie."""

    def initialize(self, path: str, default_filename: str | None = None, guard: Guard | None = None) -> None:
        super().initialize(path, default_filename)
        self.guard = guard

    def prepare(self) -> None:
        guard = self.guard
        if guard is None or not guard.auth.verifiers or "token" not in self.request.query_arguments:
            return
        token = self.get_query_argument("token")
        try:
            identity = guard.auth.verify(token)
        except AuthError:
            return  # the console's own API calls will say why
        self.set_cookie(
            guard.conf.cookie_name,
            token,
            path="",
            expires=identity.expires,
            httponly=True,
            secure=guard.conf.cookie_secure,
            samesite="Strict",
        )

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Referrer-Policy", "no-referrer")
