"""The whole spine on real processes: Kafka broker -> bridge -> Redis -> gateway -> clients."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from embedded import KafkaBroker
from tests.support import Service, WsClient, create_topic, produce


async def test_lines_reach_every_client_in_order_once(
    kafka: KafkaBroker, env: dict[str, str], services: list[Service], start_gateway, tmp_path: Path
) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:6]}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    bridge = Service(
        "bridge", dict(env, TAILGATE_KAFKA_BOOTSTRAP=kafka.bootstrap, TAILGATE_BRIDGE_TOPICS=topic), log_dir=tmp_path
    )
    services.append(bridge.start())
    gw = start_gateway()
    stream = f"kafka:{topic}"
    clients = [await WsClient.connect(gw.ws_url) for _ in range(5)]
    for c in clients:
        await c.subscribe(stream)

    values = [f"line {i:04d}".encode() for i in range(500)]
    values[100] = b"chunk a\nchunk b\nchunk c"  # one message, three lines
    values[200] = b"bad \xff\xfe utf8"
    await asyncio.to_thread(produce, kafka.bootstrap, topic, values)
    expected = [v.decode("utf-8", "replace") for v in values]
    expected[100:101] = ["chunk a", "chunk b", "chunk c"]

    for c in clients:
        await c.wait_for(lambda c=c: len(c.texts(stream)) >= len(expected), timeout=20, what="all lines")
    await asyncio.sleep(0)  # let any duplicate that is already in flight land before we check
    for c in clients:
        assert c.texts(stream) == expected
        ids = [line["id"] for line in c.lines[stream]]
        assert len(set(ids)) == len(ids)
    assert "bad \ufffd\ufffd utf8" in clients[0].texts(stream)
    for c in clients:
        await c.close()
