"""The hub reads the history epoch in live message headers (wire.envelope.frame_ids) and
never merges messages of two epochs into one batch: a batch belongs to one history."""

from __future__ import annotations

import json

import pytest

from gateway.fanout.filters import compile_filter
from gateway.fanout.hub import Batch, Hub

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
