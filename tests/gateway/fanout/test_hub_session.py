"""The pure core: fan-out grouping in the hub, ordering and backpressure in the session."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.fanout.filters import compile_filter
from gateway.fanout.history import Page
from gateway.fanout.hub import MERGE_BYTES, Batch, Hub
from gateway.fanout.session import Session
from wire.codes import GapReason

pytestmark = pytest.mark.unit


def message(first_ms: int, texts: list[str]) -> bytes:
    """A live channel message as the publish step writes it."""
    lines = [{"id": f"{first_ms + i}-0", "ts": 1.0, "text": t} for i, t in enumerate(texts)]
    return f"{first_ms}-0 {first_ms + len(texts) - 1}-0 {len(texts)}\n".encode() + json.dumps(lines).encode()


class Recorder:
    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def deliver(self, batch: Batch) -> None:
        self.batches.append(batch)


def test_first_and_last_viewer_and_shared_bytes() -> None:
    hub = Hub()
    a, b, c = Recorder(), Recorder(), Recorder()
    assert hub.add("kafka:x", a, compile_filter()) is True
    assert hub.add("kafka:x", b, compile_filter()) is False
    assert hub.add("kafka:x", c, compile_filter("err")) is False
    hub.dispatch("kafka:x", [message(100, ["ok", "err one", "fine"])])
    assert a.batches[0].frame is b.batches[0].frame  # encoded once, same bytes to each
    frame = json.loads(a.batches[0].frame)
    assert frame["type"] == "lines" and [x["text"] for x in frame["lines"]] == ["ok", "err one", "fine"]
    assert [x["text"] for x in json.loads(c.batches[0].frame)["lines"]] == ["err one"]
    assert c.batches[0].first == c.batches[0].last == (101, 0)
    assert hub.remove("kafka:x", a) is False
    assert hub.remove("kafka:x", b) is False
    assert hub.remove("kafka:x", c) is True
    assert hub.streams() == []


def test_messages_waiting_together_go_out_as_one_frame() -> None:
    hub = Hub()
    a, b = Recorder(), Recorder()
    hub.add("kafka:x", a, compile_filter())
    hub.add("kafka:x", b, compile_filter(regex="^k"))
    hub.dispatch("kafka:x", [message(10, ["k1", "x2"]), b"garbage", message(20, ["k3"])])
    (batch,) = a.batches
    assert (batch.first, batch.last, batch.count) == ((10, 0), (20, 0), 3)
    assert [x["text"] for x in json.loads(batch.frame)["lines"]] == ["k1", "x2", "k3"]
    assert [x["text"] for x in b.batches[0].lines] == ["k1", "k3"]


def test_a_burst_is_merged_into_frames_of_bounded_size() -> None:
    hub = Hub()
    a = Recorder()
    hub.add("kafka:x", a, compile_filter())
    big = "y" * 100_000
    hub.dispatch("kafka:x", [message(i * 10, [big, big]) for i in range(1, 11)])
    assert all(len(b.frame) < 2 * MERGE_BYTES for b in a.batches) and len(a.batches) > 1
    texts = [x["text"] for b in a.batches for x in json.loads(b.frame)["lines"]]
    assert len(texts) == 20
    assert [b.first for b in a.batches] == sorted(b.first for b in a.batches)


def test_refilter_moves_a_member_between_groups() -> None:
    hub = Hub()
    a = Recorder()
    hub.add("kafka:x", a, compile_filter("one"))
    hub.add("kafka:x", a, compile_filter("two"))
    hub.dispatch("kafka:x", [message(1, ["one", "two"])])
    assert [x["text"] for x in a.batches[0].lines] == ["two"]
    assert hub.remove("kafka:x", a) is True


def test_batch_after_trims_by_id() -> None:
    hub = Hub()
    a = Recorder()
    hub.add("kafka:x", a, compile_filter())
    hub.dispatch("kafka:x", [message(10, ["a", "b", "c", "d"])])
    batch = a.batches[0]
    assert batch.after((9, 0)) is batch
    assert batch.after((13, 0)) is None
    trimmed = batch.after((11, 0))
    assert trimmed is not None and [x["text"] for x in trimmed.lines] == ["c", "d"]
    assert trimmed.first == (12, 0)


class Wire:
    """A transport that records frames; `blocked` makes sends pend (a client not reading)."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.blocked: asyncio.Future[None] | None = None
        self.closed: tuple[int, str] | None = None

    def send(self, data: bytes, wire: bytes | None = None) -> asyncio.Future[None] | None:
        self.frames.append(json.loads(data))
        return self.blocked

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def texts(self) -> list[str]:
        return [x["text"] for f in self.frames if f["type"] == "lines" for x in f["lines"]]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_switch_from_history_to_live_neither_loses_nor_repeats() -> None:
    wire = Wire()
    session = Session(wire.send, wire.close, 1 << 20, 30)
    hub = Hub()
    gen = session.begin("kafka:x")
    hub.add("kafka:x", session, compile_filter())
    # live batches arrive while history is being read: 5..7 overlap history, 8..9 are new
    hub.dispatch("kafka:x", [message(5, ["l5", "l6", "l7"])])
    hub.dispatch("kafka:x", [message(8, ["l8", "l9"])])
    history = [{"id": f"{i}-0", "ts": 1.0, "text": f"l{i}"} for i in range(1, 7)]
    session.history("kafka:x", gen, Page(history))
    session.finish("kafka:x", gen, head=(6, 0))
    hub.dispatch("kafka:x", [message(10, ["l10"])])
    hub.dispatch("kafka:x", [message(9, ["l9"])])  # a duplicate delivery is ignored
    await settle()
    assert wire.texts() == [f"l{i}" for i in range(1, 11)]


async def test_gap_is_announced_before_the_lines() -> None:
    wire = Wire()
    session = Session(wire.send, wire.close, 1 << 20, 30)
    gen = session.begin("kafka:x", cursor=(1, 0))
    session.history("kafka:x", gen, Page([{"id": "50-0", "ts": 1.0, "text": "l50"}], GapReason.TRIMMED))
    session.finish("kafka:x", gen)
    await settle()
    assert [f["type"] for f in wire.frames] == ["gap", "lines"]
    assert wire.frames[0]["reason"] == "trimmed"


async def test_caught_up_comes_between_history_and_live_lines_and_says_where_to_resume() -> None:
    """Asked for, `caught_up` tells a client merging streams by time when history is over,
    and one that got no line at all where to resume without a hole."""
    wire = Wire()
    session = Session(wire.send, wire.close, 1 << 20, 30)
    hub = Hub()
    gen = session.begin("kafka:x", caught_up=True)
    hub.add("kafka:x", session, compile_filter())
    hub.dispatch("kafka:x", [message(8, ["l8"])])  # live, held while history is read
    session.history("kafka:x", gen, Page([{"id": "3-0", "ts": 1.0, "text": "l3"}]))
    session.finish("kafka:x", gen, head=(7, 0))
    await settle()
    assert [(f["type"], f.get("after")) for f in wire.frames] == [
        ("lines", None),
        ("caught_up", "7-0"),
        ("lines", None),
    ]
    gen = session.begin("kafka:x")  # held again (a Redis reconnect): still asked for
    session.finish("kafka:x", gen)
    quiet = Session(wire.send, wire.close, 1 << 20, 30)
    gen = quiet.begin("kafka:y", caught_up=True)
    quiet.finish("kafka:y", gen, start=(42, 1))  # live only: nothing sent, resume after the head
    unasked = quiet.begin("kafka:z")
    quiet.finish("kafka:z", unasked, start=(43, 0))
    await settle()
    assert wire.frames[-2:] == [
        {"type": "caught_up", "stream": "kafka:x", "after": "8-0"},
        {"type": "caught_up", "stream": "kafka:y", "after": "42-1"},
    ], "only subscriptions that asked for it"


async def test_a_finite_query_ends_with_complete_and_is_gone() -> None:
    wire = Wire()
    session = Session(wire.send, wire.close, 1 << 20, 30)
    gen = session.begin("kafka:x")
    session.history("kafka:x", gen, Page([{"id": "3-0", "ts": 1.0, "text": "l3"}]))
    session.complete("kafka:x", gen)
    await settle()
    assert [f["type"] for f in wire.frames] == ["lines", "complete"]
    assert "kafka:x" not in session.subs


async def test_a_stale_catch_up_is_ignored() -> None:
    wire = Wire()
    session = Session(wire.send, wire.close, 1 << 20, 30)
    old = session.begin("kafka:x")
    new = session.begin("kafka:x")
    assert not session.history("kafka:x", old, Page([{"id": "1-0", "ts": 1.0, "text": "stale"}]))
    session.finish("kafka:x", old, head=(1, 0))
    session.finish("kafka:x", new, head=(5, 0))
    await settle()
    assert wire.texts() == []


async def test_slow_client_drops_oldest_lines_and_is_told() -> None:
    wire = Wire()
    session = Session(wire.send, wire.close, max_queue_bytes=2000, slow_timeout=30)
    hub = Hub()
    wire.blocked = asyncio.get_running_loop().create_future()
    session.finish("kafka:x", session.begin("kafka:x"), head=(0, 0))
    hub.add("kafka:x", session, compile_filter())
    for i in range(1, 101):
        hub.dispatch("kafka:x", [message(i, [f"line {i} " + "x" * 50])])
    await settle()
    assert session.queued_bytes <= 2000 + 200
    wire.blocked.set_result(None)
    wire.blocked = None
    await settle()
    received = [int(t.split()[1]) for t in wire.texts()]
    dropped = sum(f["count"] for f in wire.frames if f["type"] == "dropped")
    assert received == sorted(received) and received[-1] == 100
    assert len(received) + dropped == 100 and dropped > 0
    # line 1 was already on the wire when the client stalled; then the oldest pending
    # lines went, and the notice comes right before the lines that follow the hole
    assert received == [1, *range(dropped + 2, 101)]
    assert wire.frames[1] == {"type": "dropped", "stream": "kafka:x", "count": dropped}


async def test_client_without_progress_is_closed_with_1013() -> None:
    wire = Wire()
    wire.blocked = asyncio.get_running_loop().create_future()
    session = Session(wire.send, wire.close, max_queue_bytes=1000, slow_timeout=0.0)
    hub = Hub()
    session.finish("kafka:x", session.begin("kafka:x"), head=(0, 0))
    hub.add("kafka:x", session, compile_filter())
    for i in range(1, 50):
        hub.dispatch("kafka:x", [message(i, ["y" * 100])])
    await settle()
    assert wire.closed is not None and wire.closed[0] == 1013


async def test_live_only_subscription_delivers_lines_whatever_redis_answers_first() -> None:
    # The history head read (command connection) may see a line before or after the
    # pub/sub connection delivers it; a live-only subscriber must get it either way.
    wire = Wire()
    session = Session(wire.send, wire.close, 1 << 20, 30)
    hub = Hub()
    gen = session.begin("kafka:x")
    hub.add("kafka:x", session, compile_filter())
    hub.dispatch("kafka:x", [message(7, ["held"])])  # arrived before the head was read
    session.finish("kafka:x", gen, start=(8, 0))
    hub.dispatch("kafka:x", [message(8, ["late"])])  # head already counted it; still new here
    await settle()
    assert wire.texts() == ["held", "late"]
    assert session.resume_point("kafka:x") == ((8, 0), None)


async def test_resume_point_of_an_idle_live_subscription_is_where_it_started() -> None:
    wire = Wire()
    session = Session(wire.send, wire.close, 1 << 20, 30)
    session.finish("kafka:x", session.begin("kafka:x"), start=(42, 0))
    assert session.resume_point("kafka:x") == ((42, 0), None)
