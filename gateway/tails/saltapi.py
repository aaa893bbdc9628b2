"""`salt.mode: api`: the gateway's Salt client over salt-api (rest_cherrypy) with eauth;
and `make_salt_client`, the client `salt.mode` asks for.

Through Tornado's AsyncHTTPClient; the same fixed functions, list targeting and checked
arguments as `gateway.tails.salt.LocalSalt` (`check_calls`), the same fair shares of the
workers (`take_slot`).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import tornado.httpclient

from gateway.tails.salt import LocalSalt, SaltFailure, answers, check_calls, only, take_slot
from gateway.tails.slots import Slots
from settings import SaltSettings


class ApiSalt:
    """`salt.mode: api`: salt-api's rest_cherrypy with eauth, via AsyncHTTPClient."""

    def __init__(self, conf: SaltSettings, slots: Slots) -> None:
        self.conf = conf
        self.slots = slots
        self._http: tornado.httpclient.AsyncHTTPClient | None = None
        self._token: str | None = None
        self._expires = 0.0
        self._login_lock = asyncio.Lock()

    def _request(self, path: str, body: Any, token: str | None) -> tornado.httpclient.HTTPRequest:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if token:
            headers["X-Auth-Token"] = token
        return tornado.httpclient.HTTPRequest(
            self.conf.api_url.rstrip("/") + path,
            method="POST",
            headers=headers,
            body=json.dumps(body),
            request_timeout=self.conf.timeout + 5,
            validate_cert=self.conf.api_verify_tls,
        )

    async def _login(self) -> str:
        async with self._login_lock:
            if self._token and time.time() < self._expires - 30:
                return self._token
            body = {"username": self.conf.api_username, "password": self.conf.api_password}
            body["eauth"] = self.conf.api_eauth
            resp = await self._fetch("/login", body, None)
            info = resp["return"][0]
            self._token, self._expires = info["token"], float(info.get("expire", time.time() + 600))
            return self._token

    async def _fetch(self, path: str, body: Any, token: str | None) -> Any:
        if self._http is None:
            self._http = tornado.httpclient.AsyncHTTPClient()  # bound to the running loop
        try:
            resp = await self._http.fetch(self._request(path, body, token))
        except tornado.httpclient.HTTPClientError as exc:
            if exc.code == 401:
                raise PermissionError("salt-api refused the credentials (401)") from None
            raise SaltFailure("unavailable", f"salt-api answered {exc.code}: {exc.message}") from None
        except (TimeoutError, OSError) as exc:
            raise SaltFailure("unavailable", f"salt-api unreachable: {exc}") from None
        try:
            return json.loads(resp.body)
        except ValueError:
            raise SaltFailure("unavailable", "salt-api answered with something that is not JSON") from None

    async def _lowstate(self, chunk: dict[str, Any]) -> Any:
        for attempt in (1, 2):
            try:
                token = await self._login()
                return (await self._fetch("/", [chunk], token))["return"][0]
            except PermissionError as exc:
                self._token = None
                if attempt == 2:
                    raise SaltFailure("unavailable", str(exc)) from None
            except (KeyError, IndexError, TypeError):
                raise SaltFailure("unavailable", "salt-api answered in an unexpected shape") from None
        raise AssertionError("unreachable")

    async def _call(self, caller: str | None, chunk: dict[str, Any]) -> Any:
        release = await take_slot(self.slots, caller)
        try:
            return await self._lowstate(chunk)
        finally:
            release()

    async def run(self, minion: str, fun: str, path: str | None = None, caller: str | None = None) -> Any:
        return only(minion, await self.run_many([minion], fun, path, caller))

    async def run_many(
        self, minions: list[str], fun: str, path: str | None = None, caller: str | None = None
    ) -> dict[str, Any]:
        kwarg = check_calls(minions, fun, path)
        timeout = max(1, round(self.conf.timeout))
        chunk = {"client": "local", "tgt": minions, "tgt_type": "list", "fun": fun, "timeout": timeout}
        if kwarg:
            chunk["kwarg"] = kwarg
        ret = await self._call(caller, chunk)
        return answers(minions, ret if isinstance(ret, dict) else {}, timeout)

    async def minions(self) -> list[str]:
        ret = await self._call(None, {"client": "wheel", "fun": "key.list_all"})
        try:
            return sorted(ret["data"]["return"]["minions"])
        except (KeyError, TypeError):
            raise SaltFailure("unavailable", f"salt-api wheel key.list_all: unexpected answer {ret!r:.200}") from None

    def warm(self) -> None:
        """Nothing to prepare: the first call logs in."""

    async def close(self) -> None:
        if self._http is not None:
            self._http.close()


def make_salt_client(conf: SaltSettings) -> LocalSalt | ApiSalt | None:
    """The client for `salt.mode`; None when file streams are off."""
    slots = Slots(conf.workers, conf.max_calls_per_user, conf.queue_timeout)
    if conf.mode == "local":
        return LocalSalt(conf, slots)
    if conf.mode == "api":
        return ApiSalt(conf, slots)
    return None
