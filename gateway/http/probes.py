"""Probes for whoever runs the gateway: `/healthz` (alive), `/readyz` (a load balancer's
check) and `/metrics` (Prometheus). None needs a token; keep them off public routes
(docs/SECURITY.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import tornado.web


class Readiness(Protocol):
    """What `/readyz` asks (gateway.fanout.live.LiveReader provides it)."""

    @property
    def connected(self) -> bool: ...

    @property
    def ready(self) -> bool: ...


class TaskHealth(Protocol):
    """Which background tasks the gateway needs are down (gateway.tasks.Tasks provides it)."""

    def down(self) -> list[str]: ...


class HealthHandler(tornado.web.RequestHandler):
    """`/healthz`: the process is up and its event loop answers."""

    def get(self) -> None:
        self.write({"status": "ok"})


class ReadyHandler(tornado.web.RequestHandler):
    """`/readyz`: not draining, every background task it needs running, connected to Redis
    with every channel subscribed."""

    def initialize(self, live: Readiness, draining: Callable[[], bool], tasks: TaskHealth) -> None:
        self.live = live
        self.draining = draining
        self.tasks = tasks

    def get(self) -> None:
        down = self.tasks.down()
        if self.draining():
            self.set_status(503)
            self.write({"status": "draining"})
        elif down:
            self.set_status(503)
            self.write({"status": f"task {', '.join(down)} failed; restarting"})
        elif not self.live.ready:
            self.set_status(503)
            self.write({"status": "redis unavailable" if not self.live.connected else "subscribing"})
        else:
            self.write({"status": "ready"})


class MetricsHandler(tornado.web.RequestHandler):
    """`/metrics`: Prometheus text format: this process's, or with `--workers` the sum over
    every worker (fetched from their supervisor; 503 if it does not answer)."""

    def initialize(self, exposition: Callable[[], Awaitable[bytes]]) -> None:
        self.exposition = exposition

    async def get(self) -> None:
        try:
            body = await self.exposition()
        except (OSError, TimeoutError) as exc:
            self.set_status(503)
            self.write({"status": f"metrics unavailable: {exc}"})
            return
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.write(body)
