"""Asking Salt to act on minions: the gateway's only door to them.

Two trigger modes (`salt.mode`): ``local`` runs `salt.client.LocalClient` on the master
in a thread pool (its calls block, so they never run on the event loop); ``api`` talks to
salt-api (rest_cherrypy) over HTTP with eauth, through Tornado's AsyncHTTPClient. Either
way only the fixed functions in `FUNCTIONS` may be called, against exactly one minion
(list targeting, never a glob), with arguments validated here again (contract rules and
no shell metacharacters) and passed as keyword arguments, so Salt never parses them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import tornado.httpclient

from settings import SaltSettings
from wire.filepolicy import refusal
from wire.names import StreamNameError, check_minion

log = logging.getLogger(__name__)

FUNCTIONS = frozenset({"logtail.start", "logtail.stop", "logtail.status", "logtail.list_files"})
TAKES_PATH = frozenset({"logtail.start", "logtail.stop"})


class SaltFailure(Exception):
    """A Salt call that produced no usable answer; `reason` is ``timeout`` or ``unavailable``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class SaltClient(Protocol):
    """What the gateway needs of Salt."""

    async def run(self, minion: str, fun: str, path: str | None = None) -> Any: ...

    async def minions(self) -> list[str]: ...

    async def close(self) -> None: ...


def check_call(minion: str, fun: str, path: str | None) -> dict[str, str]:
    """Refuse anything but a fixed function on one valid minion with a valid path (ValueError)."""
    if fun not in FUNCTIONS:
        raise ValueError(f"{fun!r} is not a function the gateway may call")
    try:
        check_minion(minion)
    except StreamNameError as exc:
        raise ValueError(str(exc)) from None
    if fun not in TAKES_PATH:
        return {}
    if path is None:
        raise ValueError(f"{fun} needs a path")
    refused = refusal(path, None)  # the path's shape only: admission checked the allowlist
    if refused is not None:
        raise ValueError(refused.message)
    return {"path": path}


class LocalSalt:
    """`salt.mode: local`: LocalClient on the master, one client per worker thread."""

    def __init__(self, conf: SaltSettings, workers: int = 4) -> None:
        self.conf = conf
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="salt")
        self._local = threading.local()

    def _check_master(self) -> None:
        if not os.path.exists(self.conf.master_config):
            raise SaltFailure(
                "unavailable",
                f"{self.conf.master_config} not found: salt.mode local needs the gateway on the Salt master "
                "(or use salt.mode api)",
            )

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            self._check_master()
            import salt.client  # heavy; imported on first use, in a worker thread

            client = self._local.client = salt.client.LocalClient(c_path=self.conf.master_config)
            # after `timeout`, LocalClient asks silent minions whether the job still runs
            # and waits this long for that answer too; keep the whole call near `timeout`
            client.opts["gather_job_timeout"] = max(1, round(self.conf.timeout))
        return client

    def _cmd(self, minion: str, fun: str, kwarg: dict[str, str]) -> Any:
        timeout = max(1, round(self.conf.timeout))
        ret = self._client().cmd([minion], fun, kwarg=kwarg, tgt_type="list", timeout=timeout)
        # a targeted minion that did not return is reported as False (or left out)
        if ret.get(minion, False) is False:
            raise SaltFailure("timeout", f"minion {minion} did not answer within {timeout}s")
        return ret[minion]

    async def run(self, minion: str, fun: str, path: str | None = None) -> Any:
        kwarg = check_call(minion, fun, path)
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            # LocalClient bounds itself (timeout, then gather_job_timeout); this is the backstop
            job = loop.run_in_executor(self._pool, self._cmd, minion, fun, kwarg)
            result = await asyncio.wait_for(job, 3 * self.conf.timeout + 5)
        except TimeoutError:
            raise SaltFailure("timeout", f"minion {minion} did not answer within {self.conf.timeout:.0f}s") from None
        except SaltFailure:
            raise
        # LocalClient raises its own error types (no master, no access, auth) from deep
        # inside salt; any of them means Salt is unusable for this call.
        except Exception as exc:  # noqa: BLE001
            log.warning("salt %s on %s failed: %s", fun, minion, exc)
            raise SaltFailure("unavailable", f"salt is unavailable: {exc}") from None
        log.info("salt %s %s on %s answered in %.2fs", fun, path or "", minion, time.monotonic() - started)
        return result

    def _accepted(self) -> list[str]:
        self._check_master()
        import salt.config
        import salt.key

        opts = salt.config.client_config(self.conf.master_config)
        keys = salt.key.get_key(opts).list_keys()
        return sorted(keys.get("minions", []))

    async def minions(self) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._accepted)
        except SaltFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - salt's key store raises many kinds; all mean "unknown now"
            raise SaltFailure("unavailable", f"cannot list the master's accepted minions: {exc}") from None

    def warm(self) -> None:
        """Import salt and build a client ahead of the first request (in the pool)."""
        self._pool.submit(self._client)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class ApiSalt:
    """`salt.mode: api`: salt-api's rest_cherrypy with eauth, via AsyncHTTPClient."""

    def __init__(self, conf: SaltSettings) -> None:
        self.conf = conf
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

    async def run(self, minion: str, fun: str, path: str | None = None) -> Any:
        kwarg = check_call(minion, fun, path)
        timeout = max(1, round(self.conf.timeout))
        chunk = {"client": "local", "tgt": [minion], "tgt_type": "list", "fun": fun, "timeout": timeout}
        if kwarg:
            chunk["kwarg"] = kwarg
        ret = await self._lowstate(chunk)
        if not isinstance(ret, dict) or ret.get(minion, False) is False:
            raise SaltFailure("timeout", f"minion {minion} did not answer within {timeout}s")
        return ret[minion]

    async def minions(self) -> list[str]:
        ret = await self._lowstate({"client": "wheel", "fun": "key.list_all"})
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
    if conf.mode == "local":
        return LocalSalt(conf)
    if conf.mode == "api":
        return ApiSalt(conf)
    return None
