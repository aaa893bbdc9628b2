"""The tail agent on Redis Cluster when no node answers at its start.

redis-py's cluster client asks a node for the slot map as it is made; an agent started
while the cluster is unreachable must buffer what it reads, as it does through an outage
of one Redis, and publish it once a node answers, instead of exiting with the lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from embedded.cluster import node_port
from embedded.services import RedisServer, wait_until
from tests.support import ROOT, service_env
from wire import Keys
from wire.cluster import sync_client
from wire.lifecycle import WANT_LUA
from wire.names import file_stream

AGENT = ROOT / "salt_states" / "logtail" / "files" / "logtail_agent.py"
MINION = "cluster-agent"


def one_node_cluster(port: int, workdir: Path) -> RedisServer:
    """A cluster of one primary owning every slot (redis-cli --cluster create wants three)."""
    node = RedisServer(port=port, workdir=str(workdir))
    node.dir.mkdir(parents=True, exist_ok=True)
    node.start(extra=("--cluster-enabled", "yes", "--logfile", str(node.dir / "redis.log")))
    with redis.Redis(port=port) as c:
        c.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        wait_until(lambda: b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO"), 10, what="cluster ok")
    return node


@pytest.fixture
def late_node(tmp_path: Path) -> Iterator[tuple[int, list[RedisServer]]]:
    started: list[RedisServer] = []
    yield node_port(), started
    for node in started:
        node.stop()


def test_an_agent_started_while_no_cluster_node_answers_buffers_then_publishes(
    late_node: tuple[int, list[RedisServer]], tmp_path: Path
) -> None:
    port, started = late_node
    log_file = tmp_path / "logs" / "app.log"
    log_file.parent.mkdir()
    log_file.write_text("".join(f"before {i}\n" for i in range(5)))
    keys = Keys(f"t{uuid.uuid4().hex[:8]}:", cluster=True)
    defaults = yaml.safe_load((ROOT / "salt_states" / "logtail" / "defaults.yaml").read_text())["logtail"]
    conf = {
        **defaults,
        "redis_mode": "cluster",
        "redis_cluster_nodes": [f"127.0.0.1:{port}"],
        "key_prefix": keys.prefix,
        "allowlist": [f"{log_file.parent}/**"],
        "run_dir": str(tmp_path / "run"),
        "log_dir": str(tmp_path / "log"),
        "initial_lines": 100,
        "poll_interval": 0.02,
        "grace_period": 60,
    }
    (tmp_path / "agent.json").write_text(json.dumps(conf))
    agent_log = tmp_path / "agent.log"
    argv = [sys.executable, str(AGENT), "--config", str(tmp_path / "agent.json"), "--minion-id", MINION]
    with agent_log.open("wb") as out:
        agent = subprocess.Popen([*argv, "--path", str(log_file)], env=service_env(), stdout=out, stderr=out)
    try:
        wait_until(lambda: "buffering" in agent_log.read_text(), 15, what="the agent to say it buffers")
        with log_file.open("a") as fh:
            fh.writelines(f"during {i}\n" for i in range(5))
        assert agent.poll() is None, agent_log.read_text()

        started.append(one_node_cluster(port, tmp_path / "node"))
        stream = file_stream(MINION, str(log_file)).name
        client = sync_client("redis://", [f"127.0.0.1:{port}"])
        try:
            client.eval(WANT_LUA, 1, keys.tail_wanted(stream), "test", 120_000)
            wait_until(lambda: client.xlen(keys.hist(stream)) >= 10, 20, 0.1, what="the buffered lines")
            texts = [json.loads(b"{" + f[b"d"] + b"}")["text"] for _, f in client.xrange(keys.hist(stream))]
        finally:
            client.close()
        assert texts == [f"before {i}" for i in range(5)] + [f"during {i}" for i in range(5)]
        assert agent.poll() is None, agent_log.read_text()
        assert "reachable again" in agent_log.read_text()
    finally:
        agent.terminate()
        agent.wait(10)
