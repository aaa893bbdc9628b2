"""After a failover the old primary stays a master until Sentinel demotes it, seconds
later: writers and the gateway leave it on their own before that, not when its demotion
disconnects them."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from embedded import wait_until
from embedded.sentinel import SentinelGroup
from tests.support import GatewayProc, Service, WsClient
from wire import Keys, Line, Publisher, StreamBatch, encode_line
from wire.connect import Connector, RedisTarget


class SentinelPublisher(threading.Thread):
    """Publishes 'n <i>' every few ms through a `wire.connect.Connector`, as the tail agent
    and the engine do; a refused publish (NOREPLICAS from the old primary, or no master
    named yet) is tried again, never skipped."""

    def __init__(self, group: SentinelGroup, prefix: str, stream: str) -> None:
        super().__init__(daemon=True)
        target = RedisTarget(
            "sentinel",
            group.env()["TAILGATE_REDIS_URL"],
            group.sentinels,
            group.master_name,
            sentinel_password=group.sentinel_password,
        )
        self.redis = Connector(target)
        self.pub = Publisher(self.redis.client("test-publisher", socket_timeout=2), Keys(prefix))
        self.stream = stream
        self.published = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.005):
            self.redis.follow()
            line = encode_line(Line(time.time(), f"n {self.published:05d}"))
            try:
                self.pub.publish([StreamBatch(self.stream, [(0, line)])])
            except redis.RedisError:
                continue
            self.published += 1

    def stop(self) -> int:
        self.done.set()
        self.join(5)
        self.redis.close()
        return self.published


@pytest.mark.parametrize("sentinel_group", [{"replicas": 2, "announce_ms": 2000}], indirect=True)
async def test_the_gateway_and_a_writer_leave_the_old_primary_before_it_is_demoted(
    sentinel_group: SentinelGroup, sentinel_env: dict[str, str], services: list[Service], prefix: str, tmp_path: Path
) -> None:
    group, stream = sentinel_group, "kafka:follow"
    gateway = GatewayProc(sentinel_env, log_dir=tmp_path)
    services.append(gateway)
    gateway.start()
    viewer = await WsClient.connect(gateway.ws_url)
    await viewer.subscribe(stream)
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
