"""Every component follows a Sentinel failover: an operator's SENTINEL FAILOVER, then the
new primary SIGKILLed, while lines flow from Kafka through the bridge to a viewer of the
gateway, and from a file through a tail agent. The viewer gets every line once (or an
explicit `gap`), in order; the agent's lines are in the surviving history once each."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import redis

from embedded import KafkaBroker, wait_until
from embedded.sentinel import SentinelGroup
from tests.bridge.test_faults import Feeder
from tests.sentinel.conftest import Agent, Watched, Writer
from tests.support import Service, create_topic
from wire import Keys
from wire.names import file_stream

TOTAL, RATE = 6_000, 600  # Kafka lines, and per second: about ten seconds of traffic


def history_texts(group: SentinelGroup, prefix: str, stream: str) -> list[str]:
    """The texts in a stream's history on the node the sentinels name master."""
    entries = group.client(group.master()).xrange(Keys(prefix).hist(stream))
    return [json.loads(b"{" + fields[b"d"] + b"}")["text"] for _, fields in entries]


def agent_caught_up(group: SentinelGroup, prefix: str, stream: str, written: int) -> bool:
    try:
        return len(history_texts(group, prefix, stream)) >= written
    except redis.RedisError:
        return False


async def test_a_failover_and_a_killed_primary_lose_and_double_nothing(
    kafka: KafkaBroker,
    sentinel_group: SentinelGroup,
    sentinel_env: dict[str, str],
    agent: Agent,
    watched: Watched,
    services: list[Service],
    prefix: str,
    tmp_path: Path,
) -> None:
    group = sentinel_group
    topic = f"sentinel-{uuid.uuid4().hex[:6]}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    stream, file = f"kafka:{topic}", file_stream(agent.minion, str(agent.path)).name
    _, viewer = await watched(stream)
    bridge_env = dict(
        sentinel_env,
        TAILGATE_CONFIG=str(tmp_path / "none.yaml"),
        TAILGATE_KAFKA_BOOTSTRAP=kafka.bootstrap,
        TAILGATE_BRIDGE_TOPICS=topic,
        TAILGATE_BRIDGE_METRICS_PORT="0",
        TAILGATE_BRIDGE_RETRY_MAX="1",
        TAILGATE_REDIS_HISTORY_MAXLEN="1000000",
    )
    (tmp_path / "none.yaml").write_text("bridge: {}\n")
    bridge = Service("bridge", bridge_env, args=["--static"], log_dir=tmp_path)
    services.append(bridge)
    bridge.start()
    agent.start()
    writer = Writer(agent.path, rate=50)
    writer.start()
    feeder = Feeder(kafka.bootstrap, topic, partitions=1, total=TOTAL, rate=RATE)
    feeder.start()
    seen = lambda: len(viewer.lines.get(stream, []))  # noqa: E731

    await viewer.wait_for(lambda: seen() >= 1_000, 20, "lines before the failover")
    # The file is still between faults: a line the agent published in the instant its
    # primary was lost is gone (it has no log to read again, unlike the bridge).
    written = writer.pause()
    wait_until(lambda: agent_caught_up(group, prefix, file, written), 10, what="the agent's lines")
    old = group.master()
    new = group.failover()
    writer.resume()
    before = seen()
    await viewer.wait_for(lambda: seen() >= before + 1_000, 20, "lines on the new primary")
    assert new.port != old.port

    written = writer.pause()
    wait_until(lambda: agent_caught_up(group, prefix, file, written), 10, what="the agent's lines")
    killed, survivor = group.kill_master()
    group.rejoin(killed)  # min-replicas-to-write 1: the survivor takes writes once it has a replica
    writer.resume()
    before = seen()
    await viewer.wait_for(lambda: seen() >= before + 500, 20, "lines on the survivor")
    assert survivor.port == old.port

    feeder.join(30)
    assert feeder.error is None
    gapped = lambda: viewer.of_type("gap")  # noqa: E731
    await viewer.wait_for(lambda: seen() >= TOTAL or gapped(), 30, "every line")
    texts = viewer.texts(stream)
    assert len(texts) == len(set(texts)), f"{len(texts) - len(set(texts))} lines doubled"
    assert texts == sorted(texts), "lines out of order"
    missing = sorted(set(feeder.expected()) - set(texts))
    assert not missing or gapped(), f"{len(missing)} lines missing with no gap: {missing[:5]}"
    assert not viewer.of_type("error"), viewer.of_type("error")

    written = writer.stop()
    wait_until(lambda: agent_caught_up(group, prefix, file, written), 15, what="the agent's last lines")
    assert history_texts(group, prefix, file) == [f"f {i:05d}" for i in range(written)]
    # the bridge followed the failovers through its reconnect guard: positions re-read there
    assert bridge.output().count("positions re-read") >= 1, bridge.output()[-3000:]
    await viewer.close()
