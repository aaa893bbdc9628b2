"""The JSON API (`/api/...`): the stream catalogue and the console's minion and file picker.

Every answer carries the same headers (JSON, `Cache-Control: no-store`); an error is
raised anywhere as `ApiError` and written once, by `ApiHandler.write_error`, as
``{"error": <code>, "message": ...}`` with a contract error code (wire/codes.py). Every
answer is strict, canonical JSON (wire.text.dumpb), whatever Salt or Redis handed over.
A request carrying an `Origin` the gateway does not allow (the `/ws` rule) is refused
before anything else: the API sends no CORS headers, and nothing another site's page
makes a browser ask for may start work here.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Protocol

import tornado.web

from gateway.access.audit import audit
from gateway.access.grants import Grants, grants_of
from gateway.access.guard import Guard
from gateway.access.identity import ANONYMOUS, AuthError, Identity
from gateway.tails.minions import Minions
from gateway.tails.salt import SaltClient, SaltFailure
from wire.codes import ErrorCode
from wire.filepolicy import refusal
from wire.names import StreamNameError, check_minion, file_stream
from wire.text import dumpb

log = logging.getLogger(__name__)

STATUS_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    429: ErrorCode.RATE_LIMITED,
}


class ApiError(tornado.web.HTTPError):
    """An API request answered with `status` and ``{"error": code, "message": message}``,
    and `headers` (e.g. ``Retry-After``)."""

    def __init__(self, status: int, code: ErrorCode, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, log_message=message)
        self.code = code
        self.message = message
        self.headers = headers or {}


class StreamCatalog(Protocol):
    """What `/api/streams` lists (gateway.catalog.Catalog provides it)."""

    async def list(self) -> list[dict[str, Any]]: ...


class ApiHandler(tornado.web.RequestHandler):
    """Base of the JSON API handlers: `self.identity` is set before `get` runs, or the
    request was answered 401 (authentication on and no valid token)."""

    guard: Guard
    identity: Identity = ANONYMOUS

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    def prepare(self) -> None:
        origin = self.request.headers.get("Origin")
        # Before authentication: a cross-origin call is refused whoever makes it, and a
        # file listing must not start a Salt job for another site's page.
        if origin is not None and not self.guard.origin_allowed(origin, self.request.host):
            where = {"origin": origin[:200], "path": self.request.path[:200]}
            self.guard.refuse("api", "origin", None, self.address, **where, reason="cross-origin request")
            raise ApiError(403, ErrorCode.FORBIDDEN, f"cross-origin requests are refused (Origin {origin[:200]!r})")
        try:
            self.identity = self.guard.identify(self.request, "api")
        except AuthError as exc:
            raise ApiError(401, ErrorCode.UNAUTHORIZED, str(exc)) from None

    def reply(self, body: dict[str, Any]) -> None:
        self.finish(dumpb(body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            code, message = exc.code, exc.message
            for name, value in exc.headers.items():
                self.set_header(name, value)
        else:
            code = STATUS_CODES.get(status_code, ErrorCode.UNAVAILABLE if status_code >= 500 else ErrorCode.BAD_REQUEST)
            message = self._reason
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="tailgate"')
        self.finish(dumpb({"error": code.value, "message": message}))

    @property
    def grants(self) -> Grants:
        return grants_of(self.identity)

    @property
    def address(self) -> str:
        return self.guard.address(self.request)


class StreamsHandler(ApiHandler):
    """`GET /api/streams`: the streams known that the caller may open, with their recent line rates."""

    def initialize(self, catalog: StreamCatalog, guard: Guard) -> None:
        self.catalog = catalog
        self.guard = guard

    async def get(self) -> None:
        streams = await self.catalog.list()
        grants = self.grants
        if not grants.unrestricted:
            streams = [s for s in streams if grants.allows_name(s["stream"])]
        self.reply({"streams": streams})


class MinionsHandler(ApiHandler):
    """`GET /api/minions`: the minions a file stream can be opened on (by this caller)."""

    def initialize(self, minions: Minions | None, guard: Guard) -> None:
        self.minions = minions
        self.guard = guard

    async def get(self) -> None:
        if self.minions is None:
            self.reply({"minions": [], "enabled": False})
            return
        grants = self.grants
        if not grants.unrestricted and not grants.files:
            self.reply({"minions": [], "enabled": True})  # no file stream granted: no Salt call
            return
        try:
            ids = await self.minions.list()
        except SaltFailure as exc:
            raise ApiError(503, ErrorCode.UNAVAILABLE, exc.message) from None
        self.reply({"minions": [m for m in ids if grants.may_see_minion(m)], "enabled": True})


class MinionFilesHandler(ApiHandler):
    """`GET /api/minions/<id>/files`: the files a minion lets us tail, within our allowlist
    and the caller's stream patterns."""

    def initialize(self, minions: Minions | None, salt: SaltClient | None, allowlist: list[str], guard: Guard) -> None:
        self.minions = minions
        self.salt = salt
        self.allowlist = allowlist
        self.guard = guard

    async def get(self, minion: str) -> None:
        try:
            check_minion(minion)
        except StreamNameError as exc:
            raise ApiError(400, ErrorCode.BAD_REQUEST, str(exc)) from None
        grants = self.grants
        if not grants.may_see_minion(minion):
            self.guard.refuse(
                "list_files", "forbidden", self.identity, self.address, minion=minion, reason="no file pattern"
            )
            raise ApiError(403, ErrorCode.FORBIDDEN, f"you may not open files on {minion}")
        wait = math.ceil(self.guard.listing_wait(self.identity, self.address))
        if wait > 0:
            why = "file listings over the rate limit"
            self.guard.refuse("list_files", "list_files", self.identity, self.address, minion=minion, reason=why)
            retry = {"Retry-After": str(wait)}
            raise ApiError(429, ErrorCode.RATE_LIMITED, f"too many file listings; retry in {wait}s", retry)
        audit("list_files", "grant", self.identity, self.address, minion=minion)
        if self.minions is None or self.salt is None:
            raise ApiError(503, ErrorCode.UNAVAILABLE, "file streams are off on this gateway (salt.mode: off)")
        try:
            if not await self.minions.known(minion):
                raise ApiError(404, ErrorCode.NOT_FOUND, f"no minion {minion!r} is known to the Salt master")
            ret = await self.salt.run(minion, "logtail.list_files", caller=self.guard.caller(self.identity))
        except SaltFailure as exc:
            raise ApiError(504 if exc.reason == "timeout" else 503, ErrorCode.UNAVAILABLE, exc.message) from None
        if not isinstance(ret, dict) or not ret.get("ok"):
            message = ret.get("message") if isinstance(ret, dict) else str(ret)[:300]
            raise ApiError(502, ErrorCode.UNAVAILABLE, f"logtail.list_files on {minion} failed: {message}")
        files = []
        for entry in ret.get("files", []):
            path = entry.get("path") if isinstance(entry, dict) else None
            if not isinstance(path, str) or refusal(path, self.allowlist, resolve=False) is not None:
                continue
            try:
                stream = file_stream(minion, path)
            except StreamNameError:
                continue
            if not grants.allows(stream):
                continue
            files.append({"path": path, "stream": stream.name, "size": entry.get("size"), "mtime": entry.get("mtime")})
        self.reply({"minion": minion, "files": files, "truncated": bool(ret.get("truncated"))})
