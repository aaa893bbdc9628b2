"""After a failover the old primary stays a master until Sentinel demotes it, seconds
later: writers and the gateway leave it on their own before that, not when its demotion
disconnects them."""

from __future__ import annotations

import pytest

from embedded import wait_until
from embedded.sentinel import SentinelGroup
from tests.sentinel.conftest import SentinelPublisher, Watched
from wire import Keys


@pytest.mark.parametrize("sentinel_group", [{"replicas": 2, "announce_ms": 2000}], indirect=True)
async def test_the_gateway_and_a_writer_leave_the_old_primary_before_it_is_demoted(
    sentinel_group: SentinelGroup, watched: Watched, prefix: str
) -> None:
    group, stream = sentinel_group, "kafka:follow"
    gateway, viewer = await watched(stream)
    publisher = SentinelPublisher(group, prefix, stream)
    publisher.start()
    await viewer.wait_for(lambda: len(viewer.lines.get(stream, [])) >= 100, 10, "lines before the failover")

    old = group.master()
    new = group.client(group.failover())
    hist = Keys(prefix).hist(stream)
    # The writer moves to the new primary: its history grows there...
    baseline = new.xlen(hist)
    wait_until(lambda: new.xlen(hist) >= baseline + 50, 5, what="lines written on the new primary")
    newest = new.xrevrange(hist, count=1)[0][0].decode()
    # ...and the gateway reads them there, while the old primary is still a master: Sentinel
    # demotes it (and so disconnects everyone) only some eight seconds after the failover.
    ids = lambda: {line["id"] for line in viewer.lines.get(stream, [])}  # noqa: E731
    await viewer.wait_for(lambda: newest in ids(), 4, "the new primary's lines")
    assert group.client(old).execute_command("ROLE")[0] == b"master"
    assert "moving the pub/sub connection there" in gateway.output()

    publisher.stop()
    texts = viewer.texts(stream)
    assert len(texts) == len(set(texts)) and texts == sorted(texts)
    await viewer.close()
