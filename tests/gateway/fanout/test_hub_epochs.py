"""The hub reads the history epoch in live message headers (wire.envelope.frame_ids),
never merges messages of two epochs into one batch (a batch belongs to one history) and
stamps each frame with it; a session tells its client once when the epoch changes under a
live subscription."""

from __future__ import annotations

import json

import pytest

from gateway.fanout.filters import compile_filter
from gateway.fanout.history import Page
from gateway.fanout.hub import Batch, Hub
from gateway.fanout.session import Session

pytestmark = pytest.mark.unit


def message(first_ms: int, texts: list[str], epoch: str | None) -> bytes:
    lines = [{"id": f"{first_ms + i}-0", "ts": 1.0, "text": t} for i, t in enumerate(texts)]
    header = f"{first_ms}-0 {first_ms + len(texts) - 1}-0 {len(texts)}" + (f" {epoch}" if epoch else "")
    return f"{header}\n".encode() + json.dumps(lines).encode()


class Recorder:
    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def deliver(self, batch: Batch) -> None:
        self.batches.append(batch)


def test_messages_of_one_epoch_merge_and_an_epoch_change_starts_a_new_batch() -> None:
    hub = Hub()
    a = Recorder()
    hub.add("kafka:x", a, compile_filter())
    hub.dispatch(
        "kafka:x",
        [message(10, ["a", "b"], "e1"), message(20, ["c"], "e1"), message(5, ["d"], "e2"), message(6, ["e"], "e2")],
    )
    assert [(b.first, b.last, b.count) for b in a.batches] == [((10, 0), (20, 0), 3), ((5, 0), (6, 0), 2)]
    assert [[x["text"] for x in json.loads(b.frame)["lines"]] for b in a.batches] == [["a", "b", "c"], ["d", "e"]]


def test_headers_with_and_without_an_epoch_are_both_delivered() -> None:
    hub = Hub()
    a = Recorder()
    hub.add("kafka:x", a, compile_filter())
    hub.dispatch("kafka:x", [message(10, ["old producer"], None), message(20, ["new producer"], "e1")])
    assert [x["text"] for b in a.batches for x in json.loads(b.frame)["lines"]] == ["old producer", "new producer"]


def test_every_live_frame_says_its_epoch_and_a_header_that_is_no_epoch_is_left_out() -> None:
    hub = Hub()
    plain, filtered = Recorder(), Recorder()
    hub.add("kafka:x", plain, compile_filter())
    hub.add("kafka:x", filtered, compile_filter("b"))
    hub.dispatch("kafka:x", [message(10, ["a", "b"], "e1")])
    hub.dispatch("kafka:x", [message(20, ["b2"], None)])
    hub.dispatch("kafka:x", [b'30-0 30-0 1 e"x\n[{"id":"30-0","ts":1.0,"text":"b3"}]'])  # a key written by hand
    epochs = [[json.loads(b.frame).get("epoch", "none") for b in r.batches] for r in (plain, filtered)]
    assert epochs == [["e1", "none", "none"], ["e1", "none", "none"]]
    assert [b.epoch for b in plain.batches] == ["e1", None, None]
    trimmed = plain.batches[0].after((10, 0))
    assert trimmed is not None and json.loads(trimmed.frame)["epoch"] == "e1" and trimmed.epoch == "e1"


class Wire:
    def __init__(self) -> None:
        self.frames: list[dict] = []

    def send(self, data: bytes, wire: bytes | None = None) -> None:
        self.frames.append(json.loads(data))

    def close(self, code: int, reason: str) -> None:
        pass


def live_session(epoch: str | None) -> tuple[Hub, Wire]:
    """A session live on kafka:x after a catch-up that read a history of `epoch`."""
    hub, wire = Hub(), Wire()
    session = Session(wire.send, wire.close, 1 << 20, 30)
    generation = session.begin("kafka:x")
    hub.add("kafka:x", session, compile_filter())
    session.history("kafka:x", generation, Page([], epoch=epoch))
    session.finish("kafka:x", generation, start=(100, 0))
    return hub, wire


def said(wire: Wire) -> list[tuple[str, object]]:
    return [(f["type"], f.get("reason") or [x["text"] for x in f["lines"]]) for f in wire.frames]


async def test_a_new_epoch_under_a_live_subscription_is_one_reset_gap_and_its_lines_all_come() -> None:
    hub, wire = live_session("e1")
    hub.dispatch("kafka:x", [message(101, ["a"], "e1")])
    # the history created again (FLUSHALL): its ids may even be lower than the cursor
    hub.dispatch("kafka:x", [message(50, ["b"], "e2")])
    hub.dispatch("kafka:x", [message(51, ["c"], "e2"), message(52, ["d"], None)])
    hub.dispatch("kafka:x", [message(51, ["c again"], "e2")])
    assert said(wire) == [("lines", ["a"]), ("gap", "reset"), ("lines", ["b"]), ("lines", ["c"]), ("lines", ["d"])]


async def test_the_first_epoch_a_subscription_learns_live_is_taken_without_a_gap() -> None:
    hub, wire = live_session(None)  # no history yet when it subscribed
    hub.dispatch("kafka:x", [message(101, ["a"], "e1")])
    hub.dispatch("kafka:x", [message(102, ["b"], "e1")])
    assert said(wire) == [("lines", ["a"]), ("lines", ["b"])]
