"""The front door every handler shares: who is asking, from where, under which host name
and origin, how many connections, file streams and file listings, and the one place a
refusal is counted and audited.

One `Guard` per gateway process, handed to handlers through `initialize()`. It ties
`identity` (who), `grants` (what), `hosts` (which names are served), `limits` (how
many) and `audit` together; every refusal anywhere in the gateway goes through
`Guard.refuse`.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlparse

from tornado.httputil import HTTPServerRequest

from gateway.access.audit import audit
from gateway.access.grants import Grants, grants_of
from gateway.access.hosts import HostPolicy
from gateway.access.identity import Authenticator, AuthError, Identity
from gateway.access.limits import ConnectionCounter, FileStreamQuota, KeyedRate, Watcher
from settings import AuthSettings, GatewaySettings, SaltSettings


class RefusalMetrics(Protocol):
    """Where refusals are counted (gateway.metrics.GatewayMetrics provides it)."""

    def refused(self, why: str) -> None: ...


def normal_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, without a trailing slash or path."""
    parsed = urlparse(origin.strip().lower())
    return f"{parsed.scheme}://{parsed.netloc}" if parsed.scheme and parsed.netloc else origin.strip().lower()


class Guard:
    """Authentication, origin policy, connection counting and refusals for one gateway process."""

    def __init__(
        self,
        conf: AuthSettings,
        metrics: RefusalMetrics,
        gateway: GatewaySettings | None = None,
        salt: SaltSettings | None = None,
    ) -> None:
        gateway, salt = gateway or GatewaySettings(), salt or SaltSettings()
        self.conf = conf
        self.metrics = metrics
        self.auth = Authenticator(conf)
        self.enabled = self.auth.enabled
        self.hosts = HostPolicy(gateway.allowed_hosts)
        self.origins = frozenset(normal_origin(o) for o in conf.allowed_origins if o.strip())
        self.connections = ConnectionCounter(conf.max_connections_per_user, conf.max_connections_per_address)
        self.file_streams = FileStreamQuota(salt.max_streams_per_user)
        self.listings = KeyedRate(salt.list_files_rate, salt.list_files_burst)

    def refuse(
        self, event: str, why: str, identity: Identity | None, address: str, decision: str = "refuse", **what: Any
    ) -> None:
        """Count one refusal under `why` (an access reason such as ``forbidden``, or the
        abuse limit that refused it) and write its audit line; `what` says what was asked
        and, as ``reason``, why, in words."""
        self.metrics.refused(why)
        audit(event, decision, identity, address, **what)

    def identify(self, request: HTTPServerRequest, event: str) -> Identity:
        """The caller, or `AuthError` (counted and audited) when it cannot be authenticated."""
        try:
            return self.auth.authenticate(request)
        except AuthError as exc:
            why = "expired" if "expired" in str(exc) else "unauthenticated"
            self.refuse(event, why, None, self.address(request), path=request.path, reason=str(exc))
            raise

    def address(self, request: HTTPServerRequest) -> str:
        return self.auth.client_address(request)

    def grants(self, identity: Identity) -> Grants:
        return grants_of(identity)

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        """`auth.allowed_origins` when set, else the page's own host only (Tornado's rule)."""
        if self.origins:
            return normal_origin(origin) in self.origins
        return urlparse(origin).netloc.lower() == (host or "").lower()

    def host_allowed(self, host: str) -> bool:
        """Whether a request naming `host` is answered: always with authentication on
        (tokens protect), else only loopback names and `gateway.allowed_hosts`."""
        return self.enabled or self.hosts.allows(host)

    def admit_file_stream(self, identity: Identity, watcher: Watcher, stream: str) -> None:
        """Count a file stream against its user's quota (with authentication on: with it
        off everyone is the same user), or raise `ProtocolError` ``too_large``."""
        if self.enabled and stream.startswith("file:"):
            self.file_streams.admit(identity.user, watcher, stream)

    def caller(self, identity: Identity) -> str | None:
        """The user whose share of the Salt workers `identity`'s calls use (None with
        authentication off, when everyone is the same user: the total bounds them)."""
        return identity.user if self.enabled else None

    def caller_of(self, watcher: Watcher) -> str | None:
        """`caller` for the connection that opened a file stream (it was counted by `admit_file_stream`)."""
        return self.file_streams.user_of(watcher)

    def listing_wait(self, identity: Identity, address: str) -> float:
        """0 when a minion's files may be listed now for this caller, else the seconds
        until they may (per user; per client address with authentication off)."""
        return self.listings.take(self.caller(identity) or address)
