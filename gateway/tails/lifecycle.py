"""The lifecycle of file streams' remote tails, as seen from one gateway.

While this gateway has viewers of a ``file:<minion>:<path>`` stream it holds a "wanted"
lease in Redis (`wire.lifecycle`), renewed every third of `salt.wanted_ttl`, and watches
the agent's heartbeat key. When no agent is alive, exactly one gateway, the one that
wins the stream's Redis lock (SET NX PX), asks Salt to start one (``logtail.start``,
`gateway.tails.starter`); the others wait for the heartbeat. The streams one viewer
opens together (a minion glob's members) are started together: one Salt call for the
minions of one path. Viewers on this gateway are told ``status``:
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
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.tails.minions import Minions
from gateway.tails.salt import SaltClient, SaltFailure
from gateway.tails.starter import Starter, Tail
from gateway.tasks import Tasks
from settings import SaltSettings
from wire import Keys, parse_stream
from wire.codes import ErrorCode, ProtocolError
from wire.filepolicy import refusal
from wire.lifecycle import UNWANT_LUA, WANT_LUA, owner_id

log = logging.getLogger(__name__)

RETRY_AFTER = 15.0


Notify = Callable[[str, dict[str, Any]], None]


class Viewer(Protocol):
    """A viewer told a stream's current status when it joins (a fanout Session)."""

    def control(self, obj: dict[str, Any]) -> None: ...


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
        self.tails: dict[str, Tail] = {}
        self._want = redis.register_script(WANT_LUA)
        self._unwant = redis.register_script(UNWANT_LUA)
        self.starter = Starter(redis, keys, salt, conf, self.owner, self._set, self._fail) if salt is not None else None
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

    def viewers_joined(self, session: Viewer, names: list[str]) -> None:
        """A viewer subscribed to `names` together (one stream, or a minion glob's members):
        each stream's first viewer starts its lifecycle, and the agents those need are
        started in one group (one Salt call for the minions of one path)."""
        opened = []
        for name in names:
            if not name.startswith("file:"):
                continue
            tail = self.tails.get(name)
            if tail is None:
                tail = self.tails[name] = Tail(parse_stream(name), caller=self.caller_of(session))
                opened.append(tail)
            else:
                if tail.state:
                    session.control(self._frame(tail))
                if tail.state == "failed":
                    tail.retry_at = time.monotonic()  # a new viewer asks again
        if opened:
            self._spawn(self._open(opened), "tail-open")
        if self._ticker is None and self.tails:
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

    async def _open(self, tails: list[Tail]) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            for tail in tails:
                await self._want(
                    keys=[self.keys.tail_wanted(tail.stream.name)], args=[self.owner, self._ttl_ms], client=pipe
                )
            for tail in tails:
                pipe.exists(self.keys.tail_alive(tail.stream.name))
            alive = (await pipe.execute())[len(tails) :]
        except (RedisError, OSError) as exc:
            log.warning("file streams %s: redis: %s; the next tick retries", [t.stream.name for t in tails], exc)
            return
        needed = []
        for tail, up in zip(tails, alive, strict=True):
            if self.tails.get(tail.stream.name) is not tail:
                continue
            if up:
                self._observe(tail, True)
            elif tail.task is None:
                needed.append(tail)
        if needed:
            self._start_group(needed)

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

    def _observe(self, tail: Tail, alive: bool) -> None:
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
        self._start_group([tail])

    def _start_group(self, tails: list[Tail]) -> None:
        task = self._spawn(self._start(tails), "tail-start")
        for tail in tails:
            tail.task = task

    async def _start(self, tails: list[Tail]) -> None:
        try:
            if self.starter is not None:
                await self.starter.start(tails)
        except (RedisError, OSError) as exc:
            log.warning(
                "starting the tails of %s: redis: %s; the next tick retries", [t.stream.name for t in tails], exc
            )
        finally:
            for tail in tails:
                tail.task = None

    def _fail(self, tail: Tail, message: str, transient: bool) -> None:
        log.warning("file stream %s failed: %s", tail.stream.name, message)
        tail.retry_at = time.monotonic() + RETRY_AFTER if transient else None
        self._set(tail, "failed", message)

    def _set(self, tail: Tail, state: str, message: str = "") -> None:
        if (tail.state, tail.message) == (state, message):
            return
        tail.state, tail.message = state, message
        if self.tails.get(tail.stream.name) is not tail:
            return
        self.notify(tail.stream.name, self._frame(tail))

    @staticmethod
    def _frame(tail: Tail) -> dict[str, Any]:
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
