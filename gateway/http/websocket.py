"""`/ws`: the WebSocket handler, one per client. It authenticates the handshake, parses
each frame into a command, checks limits and access, and hands the work to the session
and the subscription operations. Dependencies arrive through `initialize()`.

What a connection holds (gauge, per-user and per-address counts, expiry timer, session with
its hub memberships, SUBSCRIBEs, leases) is given back in `on_close` whatever ends it, even an
exception in `open`/`on_message` (logged, answered with 1011; Tornado skips `on_close` then)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import tornado.iostream
import tornado.web
import tornado.websocket

from gateway.access.audit import audit
from gateway.access.grants import UNRESTRICTED
from gateway.access.guard import Guard
from gateway.access.identity import ANONYMOUS, AuthError
from gateway.access.limits import ControlLimiter
from gateway.fanout.frames import error_frame
from gateway.fanout.live import Unavailable
from gateway.fanout.orchestrator import Orchestrator
from gateway.fanout.session import Session
from gateway.http.globs import Globs, MinionList
from gateway.http.protocol import Ping, Subscribe, Unsubscribe, parse_command, peek_stream
from gateway.http.queries import Limits
from gateway.metrics import GatewayMetrics
from gateway.tasks import Tasks
from settings import GatewaySettings
from wire.codes import CloseCode, ErrorCode, ProtocolError
from wire.names import FileGlob

log = logging.getLogger(__name__)


class _Protocol(tornado.websocket.WebSocketProtocol13):
    """Tornado's RFC 6455 protocol, except that before it closes a connection with 1009
    for a frame over `websocket_max_message_size`, the client gets a `too_large` error."""

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if (
            code == CloseCode.TOO_LARGE
            and not self.server_terminated
            and self.stream is not None
            and not self.stream.closed()
        ):
            handler = self.handler
            if isinstance(handler, TailSocket):
                handler.frame_too_large()
                with contextlib.suppress(tornado.websocket.WebSocketClosedError, tornado.iostream.StreamClosedError):
                    self.write_message(handler.too_large_frame())
        super().close(code, reason)


class TailSocket(tornado.websocket.WebSocketHandler):
    """`/ws`: one client. Frames are handled one at a time, in order: Tornado does not
    read the next frame until `on_message` returns, so a subscribe completes (history
    included) before the next command is looked at.

    Access control happens at the edges, never per line: the handshake authenticates
    (401), checks the origin (403) and counts connections (accepted, then closed 4029);
    each subscribe is authorised once; a timer closes the connection (4001) when the
    token expires; every client frame spends a control-rate token."""

    def initialize(
        self,
        orchestrator: Orchestrator,
        settings: GatewaySettings,
        metrics: GatewayMetrics,
        guard: Guard,
        tasks: Tasks,
        minions: MinionList | None = None,
    ) -> None:
        self.orchestrator = orchestrator
        self.globs = Globs(minions, settings.max_glob_minions)
        self.limits = Limits(settings.max_backlog, settings.max_pattern_chars, settings.max_filter_terms)
        self.conf = settings
        self.metrics = metrics
        self.guard = guard
        self.tasks = tasks
        self.session: Session | None = None
        self.identity = ANONYMOUS
        self.grants = UNRESTRICTED
        self.address = ""
        self.limiter = ControlLimiter(settings.control_rate, settings.control_burst)
        self._counted = False
        self._expiry: asyncio.TimerHandle | None = None

    def prepare(self) -> None:
        self.address = self.guard.address(self.request)
        try:
            self.identity = self.guard.identify(self.request, "connect")
        except AuthError as exc:
            self.set_status(401)
            self.set_header("WWW-Authenticate", 'Bearer realm="tailgate"')
            self.finish(str(exc))
            return
        self.grants = self.guard.grants(self.identity)

    def check_origin(self, origin: str) -> bool:
        if self.guard.origin_allowed(origin, self.request.headers.get("Host")):
            return True
        self.guard.refuse(
            "connect", "origin", self.identity, self.address, origin=origin[:200], reason="origin not allowed"
        )
        return False

    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        protocol = super().get_websocket_protocol()
        if type(protocol) is tornado.websocket.WebSocketProtocol13:
            return _Protocol(self, False, protocol.params)
        return protocol

    def frame_too_large(self) -> None:
        self.metrics.errors.labels(ErrorCode.TOO_LARGE).inc()
        self.guard.refuse(
            "message",
            "frame_size",
            self.identity,
            self.address,
            reason=f"a frame over {self.conf.max_frame_bytes} bytes",
        )

    def too_large_frame(self) -> str:
        return error_frame(ErrorCode.TOO_LARGE, f"frames are limited to {self.conf.max_frame_bytes} bytes").decode()

    def open(self) -> None:
        try:
            self._open()
        except Exception:
            log.exception("/ws open for %s failed; closing the connection with 1011", self.address)
            self._failed("open")

    def _open(self) -> None:
        if self.guard.enabled:
            refused = self.guard.connections.acquire(self.identity.user, self.address)
            if refused is not None:
                why = "too many connections " + ("for this user" if refused == "per_user" else "from this address")
                self.guard.refuse("connect", f"connections_{refused}", self.identity, self.address, reason=why)
                self.close(CloseCode.TOO_MANY_CONNECTIONS, why)
                return
            self._counted = True
            audit("connect", "grant", self.identity, self.address, expires=_iso(self.identity.expires))
            if self.identity.expires is not None:
                delay = max(0.0, self.identity.expires - time.time())
                self._expiry = asyncio.get_running_loop().call_later(delay, self._token_expired)
        self.session = session = Session(
            self._send,
            self._close,
            self.conf.max_queue_bytes,
            self.conf.slow_client_timeout,
            self.metrics,
            peer=self.request.remote_ip or "",
            closed_errors=(tornado.websocket.WebSocketClosedError, tornado.iostream.StreamClosedError, OSError),
        )
        self.metrics.connections.inc()
        self.orchestrator.join(session)

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

    def _token_expired(self) -> None:
        self._expiry = None
        self.guard.refuse("expire", "expired", self.identity, self.address, decision="close", reason="token expired")
        if self.session is not None:
            self.session.close(CloseCode.TOKEN_EXPIRED, "token expired")
        else:
            self.close(CloseCode.TOKEN_EXPIRED, "token expired")

    async def on_message(self, message: str | bytes) -> None:
        session = self.session
        if session is None or session.closed:
            return
        try:
            await self._command(session, message)
        except Exception:  # also one raised while answering a ProtocolError
            log.exception("/ws message from %s failed; closing the connection with 1011", self.address)
            self._failed("message")

    async def _command(self, session: Session, message: str | bytes) -> None:
        try:
            verdict = self.limiter.admit()
            if verdict is ControlLimiter.ABUSIVE:
                self.guard.refuse(
                    "rate", "rate", self.identity, self.address, reason="kept sending over the rate limit"
                )
                session.close(CloseCode.POLICY, "too many messages: rate limit exceeded")
                return
            if verdict is not ControlLimiter.OK:
                raise ProtocolError(
                    ErrorCode.RATE_LIMITED,
                    f"more than {self.conf.control_rate:g} messages a second; slow down",
                    peek_stream(message),
                    "rate",
                )
            command = parse_command(message, self.limits)
            if isinstance(command, Ping):
                session.control({"type": "pong"})
            elif isinstance(command, Unsubscribe):
                name = command.stream.name
                for stream in self.globs.pop(name) if isinstance(command.stream, FileGlob) else [name]:
                    await self.orchestrator.unsubscribe(session, stream)
                session.control({"type": "unsubscribed", "stream": name})
            elif isinstance(command, Subscribe):
                await self._subscribe(session, command)
        except ProtocolError as exc:
            self.metrics.errors.labels(exc.code).inc()
            if exc.limit is not None:
                self.guard.refuse(
                    "message", exc.limit, self.identity, self.address, stream=exc.stream, reason=exc.message
                )
            session.send_raw(error_frame(exc.code, exc.message, exc.stream))

    def _failed(self, where: str) -> None:
        self.metrics.handler_failures.labels(where).inc()
        self.close(CloseCode.INTERNAL_ERROR, "internal error")
        self.on_close()

    async def _subscribe(self, session: Session, command: Subscribe) -> None:
        name = command.stream.name
        if isinstance(command.stream, FileGlob):
            streams = await self.globs.expand(command.stream, self.grants)
        elif self.grants.allows(command.stream):
            streams = [name]
        else:
            self.guard.refuse(
                "subscribe", "forbidden", self.identity, self.address, stream=name, reason="not in the token's streams"
            )
            raise ProtocolError(ErrorCode.FORBIDDEN, f"you may not open {name}", name)
        audit("subscribe", "grant", self.identity, self.address, stream=name)
        adding = len(set(streams) - session.subs.keys())
        if adding and len(session.subs) + adding > self.conf.max_subscriptions:
            most = f"at most {self.conf.max_subscriptions} subscriptions per connection"
            raise ProtocolError(ErrorCode.TOO_LARGE, most, name, "subscriptions")
        line_filter = command.filter.compile(name)
        for stream in streams:
            self.guard.admit_file_stream(self.identity, session, stream)
        if isinstance(command.stream, FileGlob):
            for stream in self.globs.replace(name, streams):
                await self.orchestrator.unsubscribe(session, stream)
            session.control({"type": "subscribed", "stream": name, "streams": streams})
        try:
            await self.orchestrator.subscribe_group(session, streams, line_filter, command.query)
        except Unavailable as exc:
            log.warning("subscribe %s for %s: redis unavailable: %s", name, session.peer, exc)
            raise ProtocolError(ErrorCode.UNAVAILABLE, "redis is unavailable; retry shortly", name) from None

    def on_close(self) -> None:
        """Give back what this connection holds, whatever ended it; a second call finds nothing."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._counted:
            self._counted = False
            self.guard.connections.release(self.identity.user, self.address)
        session = self.session
        if session is None:
            return
        self.session = None
        session.detach()
        self.metrics.connections.dec()
        self.tasks.spawn(self.orchestrator.leave(session), "session-cleanup")


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
