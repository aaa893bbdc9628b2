"""A real Redis Cluster on loopback: three primaries and three replicas (the tests, the
demo) or none (the benchmark). Each node is a `redis-server --cluster-enabled yes` process;
`redis-cli --cluster create` joins them. The node timeout is short (1 s) so a killed
primary's replica takes over within a few seconds; persistence is off.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import redis

from embedded.services import RedisServer, free_port, port_open, wait_until

NODE_TIMEOUT_MS = 1000


def node_port() -> int:
    """A free port whose cluster bus port (port + 10000) is a port too, and free."""
    while True:
        port = free_port()
        if port + 10000 < 65536 and not port_open(port + 10000):
            return port


class RedisClusterNodes:
    """Six nodes by default (`replicas` per primary); `seeds` is what `redis.cluster_nodes` takes."""

    def __init__(self, workdir: str | None = None, primaries: int = 3, replicas: int = 1) -> None:
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="tailgate-cluster-"))
        self.nodes: list[RedisServer] = []
        self.replicas = replicas
        for _ in range(primaries * (1 + replicas)):
            port = node_port()
            self.nodes.append(RedisServer(port=port, workdir=str(self.dir / str(port))))
        self.primary_count = primaries
        self.cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"

    @property
    def seeds(self) -> list[str]:
        return [f"127.0.0.1:{n.port}" for n in self.nodes]

    def start(self, timeout: float = 30.0) -> RedisClusterNodes:
        for node in self.nodes:
            node.dir.mkdir(parents=True, exist_ok=True)
            node.start(
                extra=(
                    *("--cluster-enabled", "yes", "--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
                    *("--repl-diskless-sync-delay", "0", "--logfile", str(node.dir / "redis.log")),
                )
            )
        subprocess.run(
            [self.cli, "--cluster", "create", *self.seeds, "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
        wait_until(self.healthy, timeout, interval=0.1, what="redis cluster ok")
        # a replica that never finished its first sync is never promoted
        wait_until(self.replicas_synced, timeout, interval=0.1, what="replicas synchronised")
        return self

    def replicas_synced(self) -> bool:
        linked = 0
        for node in self.nodes:
            with self.client(node.port) as c:
                info = c.info("replication")
            linked += info.get("role") == "slave" and info.get("master_link_status") == "up"
        return linked == len(self.nodes) - self.primary_count

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=5)

    def healthy(self) -> bool:
        """Every running node says the cluster is ok and agrees on the primaries."""
        try:
            views = set()
            for node in self.nodes:
                if node.proc is None:
                    continue
                with self.client(node.port) as c:
                    if b"cluster_state:ok" not in c.execute_command("CLUSTER", "INFO"):
                        return False
                    views.add(tuple(sorted(self._primaries_seen_by(c))))
            return len(views) == 1
        except redis.RedisError:
            return False

    def _primaries_seen_by(self, c: redis.Redis) -> list[int]:
        out = []
        for line in c.execute_command("CLUSTER", "NODES").decode().splitlines():
            parts = line.split()
            if "master" in parts[2] and "fail" not in parts[2] and parts[8:]:
                out.append(int(parts[1].split("@")[0].rsplit(":", 1)[1]))
        return out

    def primaries(self) -> list[int]:
        """Ports of the primaries that own slots now."""
        for node in self.nodes:
            if node.proc is not None:
                with self.client(node.port) as c:
                    return sorted(self._primaries_seen_by(c))
        return []

    def owner(self, slot: int) -> int:
        """The port of the primary owning `slot`."""
        port = self.primaries()[0]
        with self.client(port) as c:
            for start, end, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(primary[1])
        raise LookupError(slot)

    def node_id(self, port: int) -> str:
        with self.client(port) as c:
            return c.execute_command("CLUSTER", "MYID").decode()

    def slots_of(self, port: int) -> list[int]:
        """The slots the primary on `port` owns now, lowest first."""
        with self.client(port) as c:
            ranges = c.execute_command("CLUSTER", "SLOTS")
        return sorted(s for start, end, primary, *_ in ranges if int(primary[1]) == port for s in range(start, end + 1))

    def reshard(self, source: int, target: int, slots: int, timeout: float = 30.0) -> None:
        """`redis-cli --cluster reshard`: move the `slots` lowest slots of the primary on port
        `source`, and their keys, to the primary on port `target` (it picks a single source's
        slots lowest first); returns once every node agrees again."""
        subprocess.run(
            [
                *(self.cli, "--cluster", "reshard", f"127.0.0.1:{source}"),
                *("--cluster-from", self.node_id(source), "--cluster-to", self.node_id(target)),
                *("--cluster-slots", str(slots), "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        wait_until(self.healthy, timeout, interval=0.1, what="redis cluster ok after the reshard")

    def failover(self, primary: int, timeout: float = 20.0) -> int:
        """`CLUSTER FAILOVER` on a replica of `primary` (it catches up first, so nothing is
        lost); returns the port of the new primary once every node agrees."""
        replica = None
        with self.client(primary) as c:
            for line in c.execute_command("CLUSTER", "REPLICAS", self.node_id(primary)):
                parts = line.decode().split()
                if "fail" not in parts[2]:
                    replica = int(parts[1].split("@")[0].rsplit(":", 1)[1])
        if replica is None:
            raise LookupError(f"no replica of {primary}")
        with self.client(replica) as c:
            c.execute_command("CLUSTER", "FAILOVER")
        wait_until(lambda: replica in self.primaries() and self.healthy(), timeout, interval=0.1, what="failover")
        return replica

    def kill(self, port: int) -> None:
        """SIGKILL the node on `port`; its replica is promoted after the node timeout."""
        for node in self.nodes:
            if node.port == port:
                node.kill()

    def wait_failover(self, dead: int, timeout: float = 20.0) -> None:
        wait_until(lambda: dead not in self.primaries() and self.healthy(), timeout, interval=0.1, what="failover")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
