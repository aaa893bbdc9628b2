"""The web console's files (`/`, `/static/...`), and `/static/codes.js`: the contract's
close and error codes generated from wire/codes.py, so the console names them as the
gateway does. The console itself: docs/CONSOLE.md."""

from __future__ import annotations

from pathlib import Path

import tornado.web

from gateway.access.guard import Guard
from gateway.access.identity import TOKEN_PARAMETER, AuthError
from wire.codes import javascript_module

STATIC_DIR = Path(__file__).resolve().parent / "static"


class ConsoleFileHandler(tornado.web.StaticFileHandler):
    """The console's files. Browsers revalidate them on every load (a cheap 304 by ETag),
    so after an upgrade nobody runs a mix of old and new modules.

    Opened with a valid ``?token=``, the page also sets the token cookie (HttpOnly,
    SameSite=Strict, expiring with the token; Secure when the page came over TLS, here
    or at a trusted proxy, or with `auth.cookie_secure`). The page then takes the token
    out of its address bar and authenticates every later request with the cookie alone
    (static/api.js), so page scripts never hold it and no later URL carries it."""

    def initialize(self, path: str, default_filename: str | None = None, guard: Guard | None = None) -> None:
        super().initialize(path, default_filename)
        self.guard = guard

    def prepare(self) -> None:
        guard = self.guard
        if guard is None or not guard.auth.verifiers or TOKEN_PARAMETER not in self.request.query_arguments:
            return
        token = self.get_query_argument(TOKEN_PARAMETER)
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
            secure=guard.conf.cookie_secure or self.over_tls(guard),
            samesite="Strict",
        )

    def over_tls(self, guard: Guard) -> bool:
        """The browser reached this page with https: directly, or at a trusted proxy that says so."""
        if self.request.protocol == "https":
            return True
        forwarded = self.request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
        return forwarded == "https" and guard.auth.from_proxy(self.request.remote_ip or "")

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Referrer-Policy", "no-referrer")


class CodesHandler(tornado.web.RequestHandler):
    """`/static/codes.js`: the contract's codes as an ES module for the console."""

    BODY = javascript_module()

    def get(self) -> None:
        self.set_header("Content-Type", "text/javascript; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.write(self.BODY)
