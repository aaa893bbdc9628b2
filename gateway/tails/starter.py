"""Starting file streams' tail agents: the stream's Redis start lock, one Salt call for
every minion of a group, the wait for each agent's heartbeat.

A group is the tails one viewer opened together (the members of a minion glob: one file on
several minions) or a single tail the lifecycle found without an agent. For each tail the
gateway that wins its lock (SET NX PX) starts it; the others wait for the heartbeat. The
tails won in one group that share a path and a caller go to Salt as ONE ``logtail.start``
with list targeting of their validated minion ids, and each minion's answer settles its
own tail (`live`, or `failed` with that minion's reason).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from gateway.tails.salt import SaltClient, SaltFailure
from settings import SaltSettings
from wire import Keys, StreamName
from wire.lifecycle import RELEASE_LUA

log = logging.getLogger(__name__)

HEARTBEAT_WAIT = 5.0


@dataclass(eq=False)
class Tail:
    """One file stream this gateway has viewers of."""

    stream: StreamName
    state: str = ""
    message: str = ""
    task: asyncio.Task[None] | None = None
    retry_at: float | None = None
    caller: str | None = None  # the user Salt calls for this stream are made for


SetState = Callable[[Tail, str, str], None]
Fail = Callable[[Tail, str, bool], None]


class Starter:
    """Starts agents for groups of tails; tells the lifecycle each tail's outcome."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        salt: SaltClient,
        conf: SaltSettings,
        owner: str,
        set_state: SetState,
        fail: Fail,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.salt = salt
        self.conf = conf
        self.owner = owner
        self.set_state = set_state
        self.fail = fail
        self._release = redis.register_script(RELEASE_LUA)

    async def start(self, tails: list[Tail]) -> None:
        """Start the agents of `tails` whose start lock this gateway wins."""
        lock_ms = int((self.conf.timeout + HEARTBEAT_WAIT + 5) * 1000)
        won: list[Tail] = []
        try:
            for tail in tails:
                if await self.redis.set(self.keys.tail_lock(tail.stream.name), self.owner, nx=True, px=lock_ms):
                    won.append(tail)
                elif tail.state != "starting":
                    self.set_state(tail, "starting", "another gateway is starting the tail")
            groups: dict[tuple[str, str | None], list[Tail]] = {}
            for tail in won:
                groups.setdefault((tail.stream.path, tail.caller), []).append(tail)
            await asyncio.gather(*(self._start_locked(group) for group in groups.values()))
        finally:
            for tail in won:
                await self._release(keys=[self.keys.tail_lock(tail.stream.name)], args=[self.owner])

    async def _start_locked(self, group: list[Tail]) -> None:
        first = group[0]
        for tail in group:
            self.set_state(tail, "starting", "")
        started = time.monotonic()
        minions = [tail.stream.minion for tail in group]
        try:
            answers = await self.salt.run_many(minions, "logtail.start", first.stream.path, first.caller)
        except SaltFailure as exc:
            for tail in group:
                self.fail(tail, exc.message, True)
            return
        waiting = [tail for tail in group if self._answered(tail, answers[tail.stream.minion], started)]
        deadline = time.monotonic() + HEARTBEAT_WAIT
        while waiting and time.monotonic() < deadline:
            pipe = self.redis.pipeline(transaction=False)
            for tail in waiting:
                pipe.exists(self.keys.tail_alive(tail.stream.name))
            alive = await pipe.execute()
            for tail, up in zip(list(waiting), alive, strict=True):
                if up:
                    self.set_state(tail, "live", "")
                    waiting.remove(tail)
            if waiting:
                await asyncio.sleep(0.05)
        for tail in waiting:
            self.fail(tail, f"the agent sent no heartbeat to Redis within {HEARTBEAT_WAIT:.0f}s", True)

    def _answered(self, tail: Tail, ret: Any, started: float) -> bool:
        """Settle `tail` by its minion's answer; True when its agent runs (its heartbeat is next)."""
        if isinstance(ret, SaltFailure):
            self.fail(tail, ret.message, True)
            return False
        if not isinstance(ret, dict) or not ret.get("ok"):
            if isinstance(ret, dict):
                reason, message = ret.get("error", "failed"), ret.get("message", "")
            else:
                reason, message = "failed", str(ret)[:300]
            self.fail(tail, f"{reason}: {message}", reason == "failed")
            return False
        elapsed = time.monotonic() - started
        log.info("tail of %s %s (pid %s) after %.2fs", tail.stream.name, ret.get("state"), ret.get("pid"), elapsed)
        return True
