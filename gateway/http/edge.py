"""The HTTP edge: the server every request enters through, and the checks made before any route.

`EdgeApplication` answers a request naming a host the gateway does not serve (with
authentication off: DNS rebinding, gateway/access/hosts.py) with 421 before routing, so
no route (console, `/api`, `/ws`, `/metrics`) can forget it. The liveness and readiness
probes are exempt: they say only "up" and "ready", and load balancers and orchestrators
address them by IP.

`make_server` bounds what a connection may hold before it is a request: its request
head must arrive within `gateway.header_timeout` (Tornado's ``idle_connection_timeout``,
which is also the idle time allowed between keep-alive requests), a body within
`gateway.body_timeout`, and bodies are small (nothing the gateway serves takes one).
Upgraded WebSockets are past all three; their pings find dead peers.
"""

from __future__ import annotations

from typing import Any

import tornado.httpserver
import tornado.httputil
import tornado.web

from gateway.access.guard import Guard
from gateway.http.api import ApiError, ApiHandler
from settings import GatewaySettings
from wire.codes import ErrorCode

PROBES = frozenset({"/healthz", "/readyz"})
MAX_BODY_BYTES = 64 * 1024
MISDIRECTED = 421


class MisdirectedHandler(ApiHandler):
    """Any request naming a host this gateway does not answer: HTTP 421, counted and audited."""

    def initialize(self, guard: Guard) -> None:
        self.guard = guard

    def prepare(self) -> None:
        host, path = self.request.host[:200], self.request.path[:200]
        why = "host name not served with authentication off"
        self.guard.refuse("request", "host", None, self.address, host=host, path=path, reason=why)
        raise ApiError(
            MISDIRECTED,
            ErrorCode.FORBIDDEN,
            f"this gateway does not answer for the host {host!r}: with authentication off it answers only "
            "loopback names (localhost, 127.0.0.1, [::1]) and the names in gateway.allowed_hosts",
        )


class EdgeApplication(tornado.web.Application):
    """The gateway's routes, behind the host check."""

    def __init__(self, guard: Guard, handlers: list[Any], **settings: Any) -> None:
        super().__init__(handlers, **settings)
        self.guard = guard

    def find_handler(
        self, request: tornado.httputil.HTTPServerRequest, **kwargs: Any
    ) -> tornado.httputil.HTTPMessageDelegate:
        if request.path not in PROBES and not self.guard.host_allowed(request.host):
            return self.get_handler_delegate(request, MisdirectedHandler, {"guard": self.guard})
        return super().find_handler(request, **kwargs)


def make_server(app: tornado.web.Application, conf: GatewaySettings) -> tornado.httpserver.HTTPServer:
    """The HTTP server for `app`, with the edge's time and size bounds."""
    return tornado.httpserver.HTTPServer(
        app,
        xheaders=False,
        idle_connection_timeout=conf.header_timeout,
        body_timeout=conf.body_timeout,
        max_body_size=MAX_BODY_BYTES,
    )
