"""Asking Salt to act on minions: the gateway's only door to them.

Two trigger modes (`salt.mode`): ``local`` runs `salt.client.LocalClient` on the master
in a thread pool (its calls block, so they never run on the event loop); ``api`` talks to
salt-api (rest_cherrypy) over HTTP with eauth (`gateway.tails.saltapi`). Either way only
the fixed functions in `FUNCTIONS` may be called, against a list of validated minion ids
(list targeting, never a glob: a minion glob a client sent was expanded by the gateway),
with arguments validated here again (contract rules and no shell metacharacters) and
passed as keyword arguments, so Salt never parses them.
Either way at most `salt.workers` calls run at once, shared fairly between the users
they are made for (`gateway.tails.slots`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

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
    gateway itself, or authentication off), whose share of the workers it uses. `run_many`
    is one call for several minions (list targeting): each minion's return, or the
    `SaltFailure` of a minion that did not answer."""

    async def run(self, minion: str, fun: str, path: str | None = None, caller: str | None = None) -> Any: ...

    async def run_many(
        self, minions: list[str], fun: str, path: str | None = None, caller: str | None = None
    ) -> dict[str, Any]: ...

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


def check_calls(minions: list[str], fun: str, path: str | None) -> dict[str, str]:
    """`check_call` for a list target: one or more distinct minions, each checked."""
    if not minions or len(set(minions)) != len(minions):
        raise ValueError("a Salt call targets one or more distinct minions")
    kwargs = [check_call(minion, fun, path) for minion in minions]
    return kwargs[0]


def answers(minions: list[str], ret: dict[str, Any], timeout: int) -> dict[str, Any]:
    """Each targeted minion's return, or a `SaltFailure` for one that did not answer (Salt
    reports it as False, or leaves it out)."""
    return {
        m: ret[m]
        if ret.get(m, False) is not False
        else SaltFailure("timeout", f"minion {m} did not answer within {timeout}s")
        for m in minions
    }


def only(minion: str, answered: dict[str, Any]) -> Any:
    """The one minion's return of `run_many`, its failure raised."""
    ret = answered[minion]
    if isinstance(ret, SaltFailure):
        raise ret
    return ret


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

    def _cmd(self, minions: list[str], fun: str, kwarg: dict[str, str]) -> dict[str, Any]:
        timeout = max(1, round(self.conf.timeout))
        ret = self._client().cmd(minions, fun, kwarg=kwarg, tgt_type="list", timeout=timeout)
        return answers(minions, ret, timeout)

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
        return only(minion, await self.run_many([minion], fun, path, caller))

    async def run_many(
        self, minions: list[str], fun: str, path: str | None = None, caller: str | None = None
    ) -> dict[str, Any]:
        kwarg = check_calls(minions, fun, path)
        started = time.monotonic()
        minion = ",".join(minions)
        try:
            job = await self._submit(caller, self._cmd, minions, fun, kwarg)
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
