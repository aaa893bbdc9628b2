"""The bridge records Kafka progress only once a replica has the lines it covers
(`redis.min_replicas_acked`): a failover to that replica can then never leave Kafka's
copy of the progress ahead of the new primary's."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import redis

from embedded import KafkaBroker, RedisServer, free_port, wait_until
from tests.bridge.test_faults import committed_offsets
from tests.support import create_topic, http_get, produce


def unacked_steps(port: int) -> float:
    body = http_get(f"http://127.0.0.1:{port}/metrics")[1].decode()
    found = [line for line in body.splitlines() if line.startswith("tailgate_bridge_unacked_publishes_total ")]
    return float(found[0].split()[1]) if found else 0.0


def test_offsets_are_committed_only_once_a_replica_has_the_lines(
    kafka: KafkaBroker, start_bridge, history, bridge_env: dict[str, str], tmp_path: Path
) -> None:
    primary = RedisServer(workdir=str(tmp_path)).start(extra=("--repl-diskless-sync-delay", "0"))
    replica = RedisServer(workdir=str(tmp_path)).start(extra=("--replicaof", "127.0.0.1", str(primary.port)))
    client = redis.Redis.from_url(primary.url)
    try:
        online = lambda: client.info("replication").get("slave0", {}).get("state") == "online"  # noqa: E731
        wait_until(online, 10, what="the replica in sync")
        topic, group, port = f"acked-{uuid.uuid4().hex[:6]}", bridge_env["TAILGATE_BRIDGE_GROUP_ID"], free_port()
        create_topic(kafka.bootstrap, topic)
        stream = f"kafka:{topic}"
        start_bridge(
            "--static",
            "--metrics-port",
            str(port),
            TAILGATE_BRIDGE_TOPICS=topic,
            TAILGATE_REDIS_URL=primary.url,
            TAILGATE_REDIS_MIN_REPLICAS_ACKED="1",
            TAILGATE_REDIS_REPLICA_ACK_TIMEOUT="0.2",
        )
        committed = lambda: committed_offsets(kafka.bootstrap, group, topic, 1)[0]  # noqa: E731
        produce(kafka.bootstrap, topic, [f"a {i}".encode() for i in range(100)])
        wait_until(lambda: committed() == 100, 15, what="the first lines committed")

        assert replica.proc is not None
        replica.proc.send_signal(signal.SIGSTOP)  # alive, connected, acknowledging nothing
        try:
            produce(kafka.bootstrap, topic, [f"b {i}".encode() for i in range(100)])
            wait_until(lambda: len(history(stream, client)) == 200, 15, what="the lines published live")
            watch_until = time.monotonic() + 2.5  # two commit turns and more
            while time.monotonic() < watch_until:
                assert committed() == 100, "offsets committed that no replica has"
            assert unacked_steps(port) >= 1
        finally:
            replica.proc.send_signal(signal.SIGCONT)
        # nothing more is published: the bridge asks again between steps
        wait_until(lambda: committed() == 200, 15, what="every offset committed once the replica has it")
    finally:
        client.close()
        replica.stop()
        primary.stop()
