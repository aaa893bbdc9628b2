"""Bounds on the remote work users can cause from one gateway: file streams (each a
process on a server) per user and per gateway, fair shares of the Salt workers, and the
rate of file listings. Through real gateway processes; the caps and the shares through
the session's real salt-master and minion."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from embedded import wait_until
from gateway.tails.slots import Slots
from tests.conftest import SaltSession
from tests.support import AUTH_ENV, SECRET, GatewayProc, Service, WsClient, audit_records, http, metric, token
from wire import Keys

MINION = "tailgate-test-minion"
LIMITS = "tailgate_gateway_limit_refusals_total"
AUTH = {"TAILGATE_AUTH_SECRET": SECRET, "TAILGATE_AUTH_LEEWAY": "0"}


def answer(client: WsClient, stream: str) -> tuple[str, str]:
    """How the gateway last answered a subscribe to `stream`: ("subscribed", "") or ("error", code)."""
    frame = [f for f in client.frames if f.get("stream") == stream and f["type"] in ("subscribed", "error")][-1]
    return frame["type"], frame.get("code", "")


def message(client: WsClient, stream: str) -> str:
    return [f for f in client.frames if f.get("stream") == stream and f["type"] == "error"][-1]["message"]


async def test_file_streams_are_capped_per_user_and_per_gateway(
    salt_session: SaltSession, services: list[Service], tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    paths = [salt_session.logs / f"cap-{tag}-{i}.log" for i in range(5)]
    for path in paths:
        path.write_text("a line\n")
    streams = [f"file:{MINION}:{path}" for path in paths]
    caps = {"TAILGATE_SALT_MAX_STREAMS_PER_USER": "2", "TAILGATE_SALT_MAX_STREAMS": "3"}
    gw = GatewayProc(salt_session.gateway_env(**AUTH, **caps), log_dir=tmp_path)
    services.append(gw)
    gw.start()
    grant = (f"file:{MINION}:{salt_session.logs}/*",)
    alice = await WsClient.connect(f"{gw.ws_url}?token={token(grant, sub='alice')}")
    alice_too = await WsClient.connect(f"{gw.ws_url}?token={token(grant, sub='alice')}")
    bob = await WsClient.connect(f"{gw.ws_url}?token={token(grant, sub='bob')}")
    for stream in streams[:3]:
        await alice.subscribe(stream)
    assert [answer(alice, s) for s in streams[:3]] == [("subscribed", ""), ("subscribed", ""), ("error", "too_large")]
    assert message(alice, streams[2]).startswith("at most 2 file streams per user on this gateway")
    # Another connection of the same user counts as that user; joining a stream it already has does not.
    await alice_too.subscribe(streams[2])
    await alice_too.subscribe(streams[0])
    assert [answer(alice_too, s) for s in (streams[2], streams[0])] == [("error", "too_large"), ("subscribed", "")]
    # Bob has his own quota, but the gateway runs at most three file streams.
    await bob.subscribe(streams[3])
    await bob.subscribe(streams[4])
    assert [answer(bob, s) for s in streams[3:]] == [("subscribed", ""), ("error", "rate_limited")]
    assert "already runs its maximum of 3 file streams" in message(bob, streams[4])
    # Nothing was asked of Redis (no lease) or Salt for a refused stream.
    keys, rclient = Keys(salt_session.prefix), redis.Redis.from_url(salt_session.redis_url)
    try:
        assert rclient.exists(keys.tail_wanted(streams[2]), keys.tail_wanted(streams[4])) == 0
    finally:
        rclient.close()

    # A stream nobody watches any more frees the gateway's cap at once; the user's quota
    # still counts it for a while (its agent runs on for its grace period).
    await alice.send({"op": "unsubscribe", "stream": streams[1]})
    await alice.wait_for(lambda: alice.of_type("unsubscribed"), what="unsubscribed")
    await bob.subscribe(streams[4])
    assert answer(bob, streams[4]) == ("subscribed", "")
    await alice.subscribe(streams[2])
    assert answer(alice, streams[2]) == ("error", "too_large")
    for client in (alice, alice_too, bob):
        await client.close()
    assert metric(gw, LIMITS, 'limit="file_streams_per_user"') == 3
    assert metric(gw, LIMITS, 'limit="file_streams"') == 1
    refused = [r for r in audit_records(gw) if r["decision"] == "refuse"]
    assert {(r["user"], r["stream"]) for r in refused} == {("alice", streams[2]), ("bob", streams[4])}


def listing(base: str, minion: str, tok: str) -> dict[str, Any]:
    """A file listing and when it was answered (longer than `tests.support.http` waits)."""
    req = urllib.request.Request(f"{base}/api/minions/{minion}/files", headers={"Authorization": f"Bearer {tok}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    return {"status": status, "body": json.loads(body), "at": time.monotonic()}


async def test_one_user_cannot_hold_every_salt_worker(
    salt_session: SaltSession, services: list[Service], tmp_path: Path
) -> None:
    ghost = f"ghost-{uuid.uuid4().hex[:6]}"
    key = salt_session.pair.accepted_keys / ghost
    key.write_bytes((salt_session.pair.accepted_keys / MINION).read_bytes())  # accepted, but never answers
    mine = salt_session.logs / f"fair-{uuid.uuid4().hex[:8]}.log"
    mine.write_text("a line\n")
    try:
        env = salt_session.gateway_env(**AUTH, TAILGATE_SALT_TIMEOUT="3", TAILGATE_SALT_QUEUE_TIMEOUT="2")
        gw = GatewayProc(env, log_dir=tmp_path)
        services.append(gw)
        gw.start()
        mallory, erin = token(("file:*",), sub="mallory"), token((f"file:{MINION}:{mine}",), sub="erin")
        with ThreadPoolExecutor(8) as pool:
            # Mallory asks four times, at once, for the files of a minion that never answers:
            # two calls run (her share of the four workers), two wait.
            hers = [pool.submit(listing, gw.base, ghost, mallory) for _ in range(4)]
            running = 'state="running"'
            await asyncio.to_thread(
                wait_until, lambda: metric(gw, "tailgate_gateway_salt_calls", running) >= 2, 10, what="her calls"
            )
            # Erin's listing of a healthy minion runs at once, while Mallory's are stuck.
            theirs = await asyncio.to_thread(listing, gw.base, MINION, erin)
            answers = [await asyncio.wrap_future(f) for f in hers]
        assert theirs["status"] == 200 and [f["path"] for f in theirs["body"]["files"]] == [str(mine)]
        stuck = [a for a in answers if a["status"] == 504]
        queued = [a for a in answers if a["status"] == 503]
        assert len(stuck) == 2 and all("did not answer within 3s" in a["body"]["message"] for a in stuck)
        assert theirs["at"] < min(a["at"] for a in stuck)
        # Her calls beyond her share waited for a worker, then were told to retry.
        assert len(queued) == 2
        for a in queued:
            assert a["body"]["error"] == "unavailable" and a["body"]["message"].startswith("Salt is busy"), a
    finally:
        key.unlink()


def test_file_listings_are_rate_limited_per_user(start_gateway) -> None:
    gw = start_gateway(**AUTH_ENV, TAILGATE_SALT_LIST_FILES_RATE="0.2", TAILGATE_SALT_LIST_FILES_BURST="3")

    def files(user: str) -> tuple[int, Any, dict]:
        status, headers, body = http(
            gw.base + "/api/minions/web-1/files", {"Authorization": f"Bearer {token(('file:*',), sub=user)}"}
        )
        return status, headers, json.loads(body)

    # Salt is off here: an allowed listing is answered `unavailable`; the fourth is not even tried.
    assert [files("mallory")[0] for _ in range(3)] == [503, 503, 503]
    status, headers, body = files("mallory")
    assert (status, body["error"]) == (429, "rate_limited") and "too many file listings" in body["message"]
    assert 1 <= int(headers["Retry-After"]) <= 5
    assert files("erin")[0] == 503  # other users are not affected
    assert metric(gw, LIMITS, 'limit="list_files"') == 1
    assert any(r["event"] == "list_files" and r["decision"] == "refuse" for r in audit_records(gw))


@pytest.mark.unit
async def test_salt_slots_share_workers_fairly_and_time_out_waiting_calls() -> None:
    slots = Slots(total=3, per_caller=2, queue_timeout=0.3)
    a1, a2 = await slots.acquire("a"), await slots.acquire("a")
    a3 = asyncio.create_task(slots.acquire("a"))
    await asyncio.sleep(0)  # a3 is now queued behind a's share
    b1 = await asyncio.wait_for(slots.acquire("b"), 0.1)  # the free worker goes to b, not to a's queue
    assert (slots.busy, len(slots.waiting)) == (3, 1)
    a1()
    a3_release = await asyncio.wait_for(a3, 0.1)  # a's call ended: its waiting call gets the worker
    a1()  # giving a worker back twice changes nothing
    assert slots.busy == 3
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await slots.acquire(None)
    assert time.monotonic() - started >= 0.3 and not slots.waiting
    waiter = asyncio.create_task(slots.acquire("c"))
    await asyncio.sleep(0)
    waiter.cancel()  # a caller that stops waiting leaves no trace
    with pytest.raises(asyncio.CancelledError):
        await waiter
    for release in (a2, a3_release, b1):
        release()
    assert (slots.busy, dict(slots.held), len(slots.waiting)) == (0, {}, 0)
