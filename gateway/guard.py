"""The front door the handlers share: authenticate a request, judge its origin, count connections.

One `Guard` per gateway process, handed to handlers through `initialize()`. It ties
`gateway.auth` (who), `gateway.access` (what, and the audit trail) and `gateway.limits`
(how many) to the metrics, so every refusal is counted and logged in one place.
"""

from __future__ import annotations

import json
from urllib.parse import urlparse

import tornado.web
from tornado.httputil import HTTPServerRequest

from gateway.access import Grants, audit, grants_of
from gateway.auth import ANONYMOUS, Authenticator, AuthError, Identity
from gateway.limits import ConnectionCounter
from gateway.metrics import GatewayMetrics
from settings import AuthSettings

CLOSE_TOKEN_EXPIRED = 4001
CLOSE_TOO_MANY_CONNECTIONS = 4029
CLOSE_POLICY = 1008


def normal_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, without a trailing slash or path."""
    parsed = urlparse(origin.strip().lower())
    return f"{parsed.scheme}://{parsed.netloc}" if parsed.scheme and parsed.netloc else origin.strip().lower()


class Guard:
    """Authentication, origin policy and connection counting for one gateway process."""

    def __init__(self, conf: AuthSettings, metrics: GatewayMetrics) -> None:
        self.conf = conf
        self.metrics = metrics
        self.auth = Authenticator(conf)
        self.enabled = self.auth.enabled
        self.origins = frozenset(normal_origin(o) for o in conf.allowed_origins if o.strip())
        self.connections = ConnectionCounter(conf.max_connections_per_user, conf.max_connections_per_address)

    def identify(self, request: HTTPServerRequest, event: str) -> Identity:
        """The caller, or `AuthError` (counted and audited) when it cannot be authenticated."""
        try:
            return self.auth.authenticate(request)
        except AuthError as exc:
            reason = "expired" if "expired" in str(exc) else "unauthenticated"
            self.metrics.access_refused.labels(reason).inc()
            audit(event, "refuse", None, self.address(request), path=request.path, reason=str(exc))
            raise

    def address(self, request: HTTPServerRequest) -> str:
        return self.auth.client_address(request)

    def grants(self, identity: Identity) -> Grants:
        return grants_of(identity)

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        """`auth.allowed_origins` when set, else the page's own host only (Tornado's rule)."""
        if self.origins:
            return normal_origin(origin) in self.origins
        return urlparse(origin).netloc.lower() == (host or "")

    def forbidden(self) -> None:
        self.metrics.access_refused.labels("forbidden").inc()


class ApiAccess(tornado.web.RequestHandler):
    """Base of the JSON API handlers: `self.identity` is set before `get` runs, or the
    request was answered 401 (authentication on and no valid token)."""

    guard: Guard | None = None
    identity: Identity = ANONYMOUS

    def reply(self, status: int, body: dict[str, object]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body))

    def fail(self, status: int, code: str, message: str) -> None:
        self.reply(status, {"error": code, "message": message})

    def prepare(self) -> None:
        if self.guard is None:
            return
        try:
            self.identity = self.guard.identify(self.request, "api")
        except AuthError as exc:
            self.set_header("WWW-Authenticate", 'Bearer realm="tailgate"')
            self.fail(401, "unauthorized", str(exc))

    @property
    def grants(self) -> Grants:
        return grants_of(self.identity)

    @property
    def address(self) -> str:
        return self.guard.address(self.request) if self.guard is not None else self.request.remote_ip or ""
