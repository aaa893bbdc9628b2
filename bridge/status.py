"""The bridge's small HTTP port: /metrics for Prometheus, /healthz and /readyz for
whatever runs the process.

/healthz answers 503 only when the consume loop has stopped turning (a process to
restart); /readyz answers 503 while the bridge cannot republish (starting, Redis failing,
no Kafka broker answering), with the reason as text, so an orchestrator or a human sees
why lines are not flowing. Served from a daemon thread: the consume loop never waits on it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, str]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every few seconds: not worth a log line
        pass


class StatusServer:
    """/metrics, /healthz and /readyz on one port."""

    def __init__(self, registry: CollectorRegistry, live: Probe, ready: Probe) -> None:
        self.probes = {"/healthz": live, "/readyz": ready}
        self.metrics_app = make_wsgi_app(registry)
        self.server: _Server | None = None

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        probe = self.probes.get(environ.get("PATH_INFO", ""))
        if probe is None:
            return self.metrics_app(environ, start_response)
        ok, why = probe()
        start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
        return [why.encode() + b"\n"]

    def start(self, host: str, port: int) -> int | None:
        """Listen; returns the bound port, or None when it cannot be bound (the bridge keeps
        republishing: losing its status port must not stop the lines)."""
        try:
            self.server = make_server(host, port, self.app, _Server, handler_class=_QuietHandler)
        except OSError as exc:
            log.error(
                "status port: cannot listen on %s:%d (%s); running without /metrics, /healthz and /readyz",
                host,
                port,
                exc,
            )
            return None
        threading.Thread(target=self.server.serve_forever, name="bridge-status", daemon=True).start()
        return int(self.server.server_port)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
