"""The subscription operations against a real Redis, driven in-process where the order of
concurrent events must be chosen: a client leaving while its subscribe waits, a resume
whose history read keeps failing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from embedded import RedisServer
from gateway.fanout import orchestrator as orchestrator_module
from gateway.fanout.filters import compile_filter
from gateway.fanout.history import History
from gateway.fanout.hub import Hub
from gateway.fanout.live import LiveReader
from gateway.fanout.orchestrator import Orchestrator
from gateway.fanout.session import Session
from gateway.tails.lifecycle import Tails
from gateway.tails.minions import Minions
from gateway.tasks import Tasks
from settings import SaltSettings
from wire import Keys
from wire.connect import AsyncConnector, RedisTarget

FILE = "file:m1:/var/log/app.log"


class GatedSalt:
    """A Salt that knows minion `m1` but answers who the minions are only once `gate` opens."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.asked = asyncio.Event()

    async def minions(self) -> list[str]:
        self.asked.set()
        await self.gate.wait()
        return ["m1"]

    async def run(self, minion: str, fun: str, path: str | None = None, caller: str | None = None) -> Any:
        return {"ok": True, "state": "running", "pid": 0}

    async def run_many(
        self, minions: list[str], fun: str, path: str | None = None, caller: str | None = None
    ) -> dict[str, Any]:
        return {minion: await self.run(minion, fun, path, caller) for minion in minions}

    async def close(self) -> None:
        pass


class Wire:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def send(self, data: bytes, wire: bytes | None = None) -> None:
        self.frames.append(json.loads(data))

    def close(self, code: int, reason: str) -> None:
        pass


@dataclass
class Gateway:
    """The fan-out side of a gateway, on a real Redis, in this test's event loop."""

    keys: Keys
    hub: Hub
    live: LiveReader
    tails: Tails
    orchestrator: Orchestrator
    salt: GatedSalt

    def session(self) -> tuple[Session, Wire]:
        wire = Wire()
        session = Session(wire.send, wire.close, 1 << 20, 30)
        self.orchestrator.join(session)
        return session, wire


@pytest.fixture
async def gateway(redis_server: RedisServer, prefix: str) -> AsyncIterator[Gateway]:
    keys, hub, tasks, salt = Keys(prefix), Hub(), Tasks(), GatedSalt()
    commands = aioredis.Redis.from_url(redis_server.url)
    holder: list[Orchestrator] = []
    redis_at = AsyncConnector(RedisTarget(url=redis_server.url))
    live = LiveReader(redis_at, keys, hub, lambda: holder[0].hold_all(), lambda: holder[0].resume_all(), tasks)
    conf = SaltSettings(wanted_ttl=3.0, status_interval=0.1)
    notify = lambda s, f: holder[0].notify(s, f)  # noqa: E731
    tails = Tails(commands, keys, notify, tasks, salt, Minions(salt, 30), conf, ["/var/log/**"], lambda viewer: None)
    holder.append(Orchestrator(hub, live, History(commands, keys, 10_000, 1 << 20), tails))
    tasks.supervise("live-reader", live.run)
    await until(lambda: live.ready)
    yield Gateway(keys, hub, live, tails, holder[0], salt)
    await live.stop()
    await tasks.close()
    await tails.close()
    await commands.aclose()


async def until(check: Callable[[], Any], timeout: float = 5.0) -> None:
    """Wait, in this event loop (the gateway's parts run in it), until `check()` holds."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def gated_subscribe(gw: Gateway) -> Callable[[], None]:
    """Hold the live reader's SUBSCRIBE until the returned function is called."""
    opened = asyncio.Event()
    subscribe = gw.live.subscribe

    async def held(stream: str) -> None:
        await subscribe(stream)
        await opened.wait()

    gw.live.subscribe = held  # type: ignore[method-assign]
    return opened.set


@pytest.mark.parametrize("waiting_on", ["salt", "redis"])
async def test_a_client_leaving_while_its_subscribe_waits_leaves_nothing_behind(
    gateway: Gateway, rclient: redis.Redis, waiting_on: str
) -> None:
    gw = gateway
    release: Callable[[], None] = gw.salt.gate.set
    if waiting_on == "redis":
        gw.salt.gate.set()
        release = await gated_subscribe(gw)
    session, _ = gw.session()
    subscribing = asyncio.create_task(gw.orchestrator.subscribe(session, FILE, compile_filter()))
    if waiting_on == "salt":
        await gw.salt.asked.wait()
    else:
        await until(lambda: FILE in gw.hub.streams())
    session.detach()  # the client closed; its handler's on_close runs leave()
    await gw.orchestrator.leave(session)
    release()
    await subscribing
    assert gw.hub.streams() == [], "a viewer was left in the hub"
    assert FILE not in gw.tails.tails, "a lease was left to be renewed for ever"
    await until(lambda: dict(rclient.pubsub_numsub(gw.keys.live(FILE))).get(gw.keys.live(FILE).encode()) == 0)
    await until(lambda: not rclient.exists(gw.keys.tail_wanted(FILE)))


async def test_a_resume_that_keeps_failing_is_told_then_goes_live_after_a_gap(
    gateway: Gateway, rclient: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(orchestrator_module, "RESUME_PAUSES", (0.05, 0.1))
    monkeypatch.setattr(orchestrator_module, "RESUME_GIVE_UP", 1.0)
    gw, stream = gateway, "kafka:unreadable"
    session, wire = gw.session()
    await gw.orchestrator.subscribe(session, stream, compile_filter())
    rclient.set(gw.keys.hist(stream), "not a stream")  # every history read now fails (WRONGTYPE)
    rclient.client_kill_filter(_type="pubsub")
    await until(lambda: any(f.get("type") == "gap" for f in wire.frames))
    await until(lambda: gw.live.ready)
    rclient.publish(gw.keys.live(stream), b'5-0 5-0 1\n[{"id":"5-0","ts":1.0,"text":"after"}]')
    await until(lambda: any(f.get("type") == "lines" for f in wire.frames))
    kinds = [(f["type"], f.get("code") or f.get("reason")) for f in wire.frames]
    assert kinds == [("subscribed", None), ("error", "unavailable"), ("gap", "unavailable"), ("lines", None)]


async def test_a_finite_query_is_not_held_and_resumed_as_live_after_a_redis_reconnect(gateway: Gateway) -> None:
    """A finite query (`until`, `around`) has no live part: a Redis reconnect during its
    read must not make it a live subscription (a gap, then live lines) that never ends with
    `complete`; its own read fails instead, and the client is told `unavailable`."""
    gw = gateway
    session, wire = gw.session()
    await gw.orchestrator.subscribe(session, "kafka:live", compile_filter())
    session.begin("kafka:finite")  # what a finite query holds while it reads (no hub, no filter)
    gw.orchestrator.hold_all()
    await gw.orchestrator.resume_all()
    about_finite = [f for f in wire.frames if f.get("stream") == "kafka:finite"]
    assert about_finite == [], about_finite
