"""The lifecycle of file streams' remote tails, as seen from one gateway.

While this gateway has viewers of a ``file:<minion>:<path>`` stream it holds a "wanted"
lease in Redis (`wire.lifecycle`), renewed every third of `salt.wanted_ttl`, and watches
the agent's heartbeat key. When no agent is alive, exactly one gateway, the one that
wins the stream's Redis lock (SET NX PX), asks Salt to start one (``logtail.start``);
the others wait for the heartbeat. Viewers on this gateway are told ``status``:
``starting``, ``live``, ``stopped`` (the agent went away; it is started again) and
``failed`` with the reason (the minion did not answer in time, the path was refused
on the minion, the file is unreadable). Nothing here stops an agent: when the last
viewer leaves, the lease is dropped and the agent exits after its grace period; a
crashed gateway's lease simply expires.

Before any of that, `admit` refuses a file stream this gateway must not open (shell
metacharacters, outside `gateway.file_allowlist`, over `salt.max_streams` here,
unknown minion), with no Salt job. Salt calls are made for the user who opened the
stream here (`caller_of`). All Redis traffic goes over the one command connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.tails.minions import Minions
from gateway.tails.salt import SaltClient, SaltFailure
from gateway.tasks import Tasks
from settings import SaltSettings
from wire import Keys, StreamName, parse_stream
from wire.codes import ErrorCode, ProtocolError
from wire.filepolicy import refusal
from wire.lifecycle import RELEASE_LUA, UNWANT_LUA, WANT_LUA, owner_id

log = logging.getLogger(__name__)

HEARTBEAT_WAIT = 5.0
RETRY_AFTER = 15.0


Notify = Callable[[str, dict[str, Any]], None]


class Viewer(Protocol):
    """A viewer told a stream's current status when it joins (a fanout Session)."""

    def control(self, obj: dict[str, Any]) -> None: ...


@dataclass(eq=False)
class _Tail:
    stream: StreamName
    state: str = ""
    message: str = ""
    task: asyncio.Task[None] | None = None
    retry_at: float | None = None
    caller: str | None = None  # the user Salt calls for this stream are made for


class Tails:
    """File-stream lifecycle for one gateway: leases, the start lock, status frames."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        notify: Notify,
        tasks: Tasks,
        salt: SaltClient | None,
        minions: Minions | None,
        conf: SaltSettings,
        allowlist: list[str],
        caller_of: Callable[[Viewer], str | None],
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.notify = notify  # sends a status frame to this gateway's viewers of a stream
        self.tasks = tasks
        self.salt = salt
        self.minions = minions
        self.conf = conf
        self.allowlist = allowlist
        self.caller_of = caller_of
        self.owner = owner_id("gateway")
        self.tails: dict[str, _Tail] = {}
        self._want = redis.register_script(WANT_LUA)
        self._unwant = redis.register_script(UNWANT_LUA)
        self._release = redis.register_script(RELEASE_LUA)
        self._ticker: asyncio.Task[None] | None = None

    # Admission ----------------------------------------------------------------------

    async def admit(self, name: str) -> None:
        """Raise `ProtocolError` for a file stream this gateway must not open; else return."""
        stream = parse_stream(name)
        if stream.kind != "file":
            return
        refused = refusal(stream.path, self.allowlist, resolve=False, allowlist="this gateway's file allowlist")
        if refused is not None and not refused.outside:
            raise ProtocolError(ErrorCode.BAD_REQUEST, refused.message, name)
        if self.salt is None or self.minions is None:
            raise ProtocolError(ErrorCode.UNAVAILABLE, "file streams are off on this gateway (salt.mode: off)", name)
        if refused is not None:
            raise ProtocolError(ErrorCode.FORBIDDEN, refused.message, name)
        if 0 < self.conf.max_streams <= len(self.tails) and name not in self.tails:
            full = f"this gateway already runs its maximum of {self.conf.max_streams} file streams; retry later"
            raise ProtocolError(ErrorCode.RATE_LIMITED, full, name, "file_streams")
        try:
            known = await self.minions.known(stream.minion)
        except SaltFailure as exc:
            log.warning("cannot check minion %s: %s", stream.minion, exc.message)
            raise ProtocolError(
                ErrorCode.UNAVAILABLE, f"cannot reach Salt to check the minion: {exc.message}", name
            ) from None
        if not known:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no minion {stream.minion!r} is known to the Salt master", name)

    # Viewers (called by the fanout Orchestrator) ---------------------------------------

    def viewer_joined(self, session: Viewer, name: str) -> None:
        """A viewer subscribed to `name`; the first one starts the lifecycle."""
        if not name.startswith("file:"):
            return
        tail = self.tails.get(name)
        if tail is None:
            tail = self.tails[name] = _Tail(parse_stream(name), caller=self.caller_of(session))
            self._spawn(self._open(tail), "tail-open")
        else:
            if tail.state:
                session.control(self._frame(tail))
            if tail.state == "failed":
                tail.retry_at = time.monotonic()  # a new viewer asks again
        if self._ticker is None:
            self._ticker = self._spawn(self._tick_loop(), "tail-ticker")

    def last_viewer_left(self, name: str) -> None:
        """The stream's last viewer on this gateway left: drop our lease."""
        if self.tails.pop(name, None) is not None:
            self._spawn(self._drop_lease(name), "tail-drop-lease")

    # Lifecycle -----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return self.tasks.spawn(coro, name)

    @property
    def _ttl_ms(self) -> int:
        return max(1000, int(self.conf.wanted_ttl * 1000))

    async def _open(self, tail: _Tail) -> None:
        name = tail.stream.name
        try:
            await self._want(keys=[self.keys.tail_wanted(name)], args=[self.owner, self._ttl_ms])
            alive = bool(await self.redis.exists(self.keys.tail_alive(name)))
        except (RedisError, OSError) as exc:
            log.warning("file stream %s: redis: %s; the next tick retries", name, exc)
            return
        if self.tails.get(name) is tail:
            self._observe(tail, alive)

    async def _drop_lease(self, name: str) -> None:
        try:
            await self._unwant(keys=[self.keys.tail_wanted(name)], args=[self.owner])
        except (RedisError, OSError) as exc:
            log.warning("dropping the lease on %s failed (%s); it expires in %.0fs", name, exc, self.conf.wanted_ttl)

    async def _tick_loop(self) -> None:
        next_renew = time.monotonic() + self.conf.wanted_ttl / 3
        try:
            while self.tails:
                await asyncio.sleep(self.conf.status_interval)
                renew = time.monotonic() >= next_renew
                if renew:
                    next_renew = time.monotonic() + self.conf.wanted_ttl / 3
                try:
                    await self._tick(renew)
                except (RedisError, OSError) as exc:
                    log.warning("file-tail check failed: %s; retrying", exc)
        finally:
            self._ticker = None

    async def _tick(self, renew: bool) -> None:
        names = list(self.tails)
        if not names:
            return
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.exists(self.keys.tail_alive(name))
        if renew:
            for name in names:
                await self._want(keys=[self.keys.tail_wanted(name)], args=[self.owner, self._ttl_ms], client=pipe)
        results = await pipe.execute()
        for name, alive in zip(names, results[: len(names)], strict=True):
            tail = self.tails.get(name)
            if tail is not None:
                self._observe(tail, bool(alive))

    def _observe(self, tail: _Tail, alive: bool) -> None:
        if alive:
            if tail.state != "live" and tail.task is None:
                self._set(tail, "live")
            return
        if tail.state == "live":
            self._set(tail, "stopped", "the tail agent stopped; starting it again")
        if tail.task is not None:
            return
        if tail.state == "failed" and (tail.retry_at is None or time.monotonic() < tail.retry_at):
            return
        tail.task = self._spawn(self._start(tail), "tail-start")

    async def _start(self, tail: _Tail) -> None:
        name, lock = tail.stream.name, self.keys.tail_lock(tail.stream.name)
        try:
            lock_ms = int((self.conf.timeout + HEARTBEAT_WAIT + 5) * 1000)
            if not await self.redis.set(lock, self.owner, nx=True, px=lock_ms):
                if tail.state != "starting":
                    self._set(tail, "starting", "another gateway is starting the tail")
                return
            try:
                await self._start_locked(tail)
            finally:
                await self._release(keys=[lock], args=[self.owner])
        except (RedisError, OSError) as exc:
            log.warning("starting the tail of %s: redis: %s; the next tick retries", name, exc)
        finally:
            tail.task = None

    async def _start_locked(self, tail: _Tail) -> None:
        stream = tail.stream
        assert self.salt is not None
        self._set(tail, "starting")
        started = time.monotonic()
        try:
            ret = await self.salt.run(stream.minion, "logtail.start", stream.path, tail.caller)
        except SaltFailure as exc:
            self._fail(tail, exc.message, transient=True)
            return
        if not isinstance(ret, dict) or not ret.get("ok"):
            if isinstance(ret, dict):
                reason, message = ret.get("error", "failed"), ret.get("message", "")
            else:
                reason, message = "failed", str(ret)[:300]
            self._fail(tail, f"{reason}: {message}", transient=reason == "failed")
            return
        log.info(
            "tail of %s %s (pid %s) after %.2fs",
            stream.name,
            ret.get("state"),
            ret.get("pid"),
            time.monotonic() - started,
        )
        deadline = time.monotonic() + HEARTBEAT_WAIT
        while time.monotonic() < deadline:
            if await self.redis.exists(self.keys.tail_alive(stream.name)):
                self._set(tail, "live")
                return
            await asyncio.sleep(0.05)
        self._fail(
            tail,
            f"the agent (pid {ret.get('pid')}) sent no heartbeat to Redis within {HEARTBEAT_WAIT:.0f}s",
            transient=True,
        )

    def _fail(self, tail: _Tail, message: str, transient: bool) -> None:
        log.warning("file stream %s failed: %s", tail.stream.name, message)
        tail.retry_at = time.monotonic() + RETRY_AFTER if transient else None
        self._set(tail, "failed", message)

    def _set(self, tail: _Tail, state: str, message: str = "") -> None:
        if (tail.state, tail.message) == (state, message):
            return
        tail.state, tail.message = state, message
        if self.tails.get(tail.stream.name) is not tail:
            return
        self.notify(tail.stream.name, self._frame(tail))

    @staticmethod
    def _frame(tail: _Tail) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "status", "stream": tail.stream.name, "state": tail.state}
        if tail.message:
            frame["message"] = tail.message
        return frame

    async def close(self) -> None:
        """Stop watching (shutdown): drop every lease so agents end after their grace."""
        names = list(self.tails)
        self.tails.clear()
        if self._ticker is not None:
            self._ticker.cancel()
        for name in names:
            await self._drop_lease(name)
        if self.salt is not None:
            await self.salt.close()
