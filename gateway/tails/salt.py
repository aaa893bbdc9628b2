"""Asking Salt to act on minions: the gateway's only door to them.

Two trigger modes (`salt.mode`): ``local`` runs `salt.client.LocalClient` on the master
in a thread pool (its calls block, so they never run on the event loop); ``api`` talks to
salt-api (rest_cherrypy) over HTTP with eauth, through Tornado's AsyncHTTPClient. Either
way only the fixed functions in `FUNCTIONS` may be called, against exactly one minion
(list targeting, never a glob), with arguments validated here again (contract rules and
no shell metacharacters) and passed as keyword arguments, so Salt never parses them.
Either way at most `salt.workers` calls run at once, shared fairly between the users
they are made for (`gateway.tails.slots`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import tornado.httpclient

from gateway.tails.slots import Release, Slots
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
    """What the gateway needs of Salt; `caller` is the user a call is made for (None: the
    gateway itself, or authentication off), whose share of the workers it uses."""

    async def run(self, minion: str, fun: str, path: str | None = None, caller: str | None = None) -> Any: ...

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


async def take_slot(slots: Slots, caller: str | None) -> Release:
    """A worker for `caller`, or `SaltFailure` ``unavailable`` when none is free in time."""
    try:
        return await slots.acquire(caller)
    except TimeoutError:
        share = f", {slots.per_caller} for any one user" if caller is not None else ""
        raise SaltFailure(
            "unavailable",
            f"Salt is busy: no worker free within {slots.queue_timeout:g}s (at most {slots.total} calls "
            f"at once{share}); retry shortly",
        ) from None


class LocalSalt:
    """`salt.mode: local`: LocalClient on the master, one client per worker thread."""

    def __init__(self, conf: SaltSettings, slots: Slots) -> None:
        self.conf = conf
        self.slots = slots
        self._pool = ThreadPoolExecutor(max_workers=slots.total, thread_name_prefix="salt")
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

    async def _submit(self, caller: str | None, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run `fn` on a worker once `caller` may have one; the worker is given back when
        `fn` returns, even if nobody awaits it any more."""
        release = await take_slot(self.slots, caller)
        loop = asyncio.get_running_loop()
        try:
            future = self._pool.submit(fn, *args)
        except RuntimeError:  # the pool is shut down
            release()
            raise
        future.add_done_callback(lambda _: _call_soon(loop, release))
        return asyncio.wrap_future(future)

    async def run(self, minion: str, fun: str, path: str | None = None, caller: str | None = None) -> Any:
        kwarg = check_call(minion, fun, path)
        started = time.monotonic()
        try:
            job = await self._submit(caller, self._cmd, minion, fun, kwarg)
            # LocalClient bounds itself (timeout, then gather_job_timeout); this is the backstop
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
        try:
            return await (await self._submit(None, self._accepted))
        except SaltFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - salt's key store raises many kinds; all mean "unknown now"
            raise SaltFailure("unavailable", f"cannot list the master's accepted minions: {exc}") from None

    def warm(self) -> None:
        """Import salt and build a client ahead of the first request (in the pool)."""
        self._pool.submit(self._client)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: the process is ending
        loop.call_soon_threadsafe(callback)


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
        kwarg = check_call(minion, fun, path)
        timeout = max(1, round(self.conf.timeout))
        chunk = {"client": "local", "tgt": [minion], "tgt_type": "list", "fun": fun, "timeout": timeout}
        if kwarg:
            chunk["kwarg"] = kwarg
        ret = await self._call(caller, chunk)
        if not isinstance(ret, dict) or ret.get(minion, False) is False:
            raise SaltFailure("timeout", f"minion {minion} did not answer within {timeout}s")
        return ret[minion]

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
