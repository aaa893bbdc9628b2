"""A Redis primary, its replicas and three Sentinels watching them, on loopback ports.

The topology docs/REDIS.md describes, as real processes: data nodes with
``min-replicas-to-write 1`` (a primary without a replica refuses writes: with one
replica, an old primary takes nothing once its replica was promoted away) and no delay
before a diskless sync (a demoted primary rejoins at once), and Sentinels on short timers
(``down-after-milliseconds``, ``failover-timeout``, and through ``SENTINEL DEBUG`` how
often they ping, read INFO and announce themselves), so a test sees a failover in about
a second rather than Sentinel's production pace. How often they announce themselves
(`announce_ms`, Sentinel's 2000 by default) also sets how long an old primary that is
still up after a failover stays a master: four times that, then Sentinel demotes it.
Passwords are optional, and separate for the data nodes and the Sentinels; `tls` (a
certificate for 127.0.0.1 and its key) makes every node and Sentinel speak TLS only.

Production never uses this module.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
from pathlib import Path

import redis

from embedded.services import RedisServer, free_port, port_open, stop_process, wait_until

SENTINEL_DEBUG = ("info-period", "300", "ping-period", "300", "publish-period", "500")  # quick to meet


class SentinelGroup:
    """One primary with `replicas` replicas, watched by `sentinels` Sentinels."""

    def __init__(
        self,
        workdir: Path,
        replicas: int = 1,
        sentinels: int = 3,
        master_name: str = "tailgate",
        password: str = "",
        sentinel_password: str = "",
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 2000,
        announce_ms: int = 500,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.workdir = workdir
        self.master_name = master_name
        self.password = password
        self.sentinel_password = sentinel_password
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.announce_ms = announce_ms
        self.tls = tls
        self._clients: dict[int, redis.Redis] = {}
        self.nodes = [RedisServer(workdir=str(self._dir(f"node{i}"))) for i in range(1 + replicas)]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinel_procs: list[subprocess.Popen[bytes]] = []

    def _dir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- what clients are given ----------------------------------------------------------

    @property
    def sentinels(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.sentinel_ports]

    def env(self) -> dict[str, str]:
        """The TAILGATE_REDIS_* settings of a component using this group. The URL's host
        and port name nothing that listens: in sentinel mode only its scheme, password,
        database and TLS options count."""
        auth = f":{self.password}@" if self.password else ""
        url = (
            f"rediss://{auth}unused.invalid:1/0?ssl_ca_certs={self.tls[0]}"
            if self.tls
            else f"redis://{auth}unused.invalid:1/0"
        )
        return {
            "TAILGATE_REDIS_MODE": "sentinel",
            "TAILGATE_REDIS_URL": url,
            "TAILGATE_REDIS_SENTINELS": ",".join(self.sentinels),
            "TAILGATE_REDIS_MASTER_NAME": self.master_name,
            "TAILGATE_REDIS_SENTINEL_PASSWORD": self.sentinel_password,
        }

    def _client(self, port: int, password: str) -> redis.Redis:
        if port not in self._clients:  # one each: they reconnect by themselves after a restart
            tls = {"ssl": True, "ssl_ca_certs": str(self.tls[0])} if self.tls else {}
            self._clients[port] = redis.Redis("127.0.0.1", port, password=password or None, socket_timeout=2, **tls)
        return self._clients[port]

    def client(self, node: RedisServer) -> redis.Redis:
        return self._client(node.port, self.password)

    def sentinel(self, port: int) -> redis.Redis:
        return self._client(port, self.sentinel_password)

    def _tls_lines(self, port: int) -> list[str]:
        """Configuration (as `name value` lines) for TLS only on `port`."""
        if not self.tls:
            return [f"port {port}"]
        cert, key = self.tls
        return [
            "port 0",
            f"tls-port {port}",
            f"tls-cert-file {cert}",
            f"tls-key-file {key}",
            f"tls-ca-cert-file {cert}",
            "tls-auth-clients no",
            "tls-replication yes",
        ]

    # --- life ----------------------------------------------------------------------------

    def _node_args(self, node: RedisServer, replica_of: RedisServer | None = None) -> tuple[str, ...]:
        args = ["--min-replicas-to-write", "1", "--min-replicas-max-lag", "10", "--repl-diskless-sync-delay", "0"]
        for line in self._tls_lines(node.port):
            name, value = line.split(" ", 1)
            args += [f"--{name}", value]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of.port)]
        return tuple(args)

    def start(self) -> SentinelGroup:
        primary, replicas = self.nodes[0], self.nodes[1:]
        primary.start(extra=self._node_args(primary))
        for node in replicas:
            node.start(extra=self._node_args(node, primary))
        self._wait_replicas(primary, len(replicas))
        for port in self.sentinel_ports:
            self._start_sentinel(port, primary)
        for port in self.sentinel_ports:
            self._wait_sentinel(port, len(replicas))
            self.sentinel(port).execute_command("SENTINEL", "DEBUG", "publish-period", str(self.announce_ms))
        return self

    def _start_sentinel(self, port: int, primary: RedisServer) -> None:
        name, home = self.master_name, self._dir(f"sentinel{port}")
        lines = [
            *self._tls_lines(port),
            "bind 127.0.0.1",
            f"dir {home}",
            f"logfile {home / 'sentinel.log'}",
            f"sentinel monitor {name} 127.0.0.1 {primary.port} {len(self.sentinel_ports) // 2 + 1}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {name} {self.password}")
        if self.sentinel_password:
            lines += [f"requirepass {self.sentinel_password}", f"sentinel sentinel-pass {self.sentinel_password}"]
        conf = home / "sentinel.conf"  # Sentinel rewrites its own file: one each
        conf.write_text("\n".join(lines) + "\n")
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        proc = subprocess.Popen(
            [binary, str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.sentinel_procs.append(proc)
        wait_until(lambda: port_open(port), 10, what=f"sentinel on {port}")
        self.sentinel(port).execute_command("SENTINEL", "DEBUG", *SENTINEL_DEBUG)

    def _wait_sentinel(self, port: int, replicas: int) -> None:
        def knows_all() -> bool:
            state = self.sentinel(port).execute_command("SENTINEL", "MASTER", self.master_name)
            fields = dict(zip(state[::2], state[1::2], strict=True))
            others = len(self.sentinel_ports) - 1
            return int(fields[b"num-slaves"]) == replicas and int(fields[b"num-other-sentinels"]) == others

        wait_until(knows_all, 20, 0.1, what=f"sentinel {port} to see every node and sentinel")

    def _wait_replicas(self, primary: RedisServer, count: int) -> None:
        def linked() -> bool:
            return int(self.client(primary).info("replication")["connected_slaves"]) >= count

        wait_until(linked, 15, 0.05, what=f"{count} replicas of {primary.port}")

    def stop(self) -> None:
        for client in self._clients.values():
            client.close()
        for proc in self.sentinel_procs:
            stop_process(proc)
        for node in self.nodes:
            node.stop()

    # --- what the sentinels say, and faults ------------------------------------------------

    def named_master(self, port: int | None = None) -> int:
        """The port one sentinel (the first by default) names master."""
        reply = self.sentinel(port or self.sentinel_ports[0]).execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
        )
        return int(reply[1])

    def master(self) -> RedisServer:
        """The node every sentinel names master now."""
        return next(n for n in self.nodes if n.port == self.named_master())

    def _wait_moved(self, away_from: int, timeout: float) -> RedisServer:
        def agreed() -> int:
            ports = {self.named_master(p) for p in self.sentinel_ports if self._answers(p)}
            return ports.pop() if len(ports) == 1 and away_from not in ports else 0

        port = wait_until(agreed, timeout, 0.05, what=f"the sentinels to name a master other than {away_from}")
        return next(n for n in self.nodes if n.port == port)

    def _answers(self, port: int) -> bool:
        with contextlib.suppress(redis.RedisError):
            return bool(self.sentinel(port).ping())
        return False

    def failover(self, timeout: float = 15.0) -> RedisServer:
        """SENTINEL FAILOVER, as an operator does; returns the new master once every
        sentinel names it."""
        old = self.named_master()
        self.sentinel(self.sentinel_ports[0]).execute_command("SENTINEL", "FAILOVER", self.master_name)
        return self._wait_moved(old, timeout)

    def kill_master(self, timeout: float = 15.0) -> tuple[RedisServer, RedisServer]:
        """SIGKILL the master; returns (the killed node, the new master) once every
        sentinel names the new one."""
        killed = self.master()
        assert killed.proc is not None
        killed.proc.send_signal(signal.SIGKILL)
        killed.proc.wait()
        killed.proc = None
        return killed, self._wait_moved(killed.port, timeout)

    def rejoin(self, node: RedisServer) -> None:
        """Start a stopped node again as a replica of the master (its data gone, as after
        a crash without persistence), and wait until the master has it."""
        master = self.master()
        node.start(extra=self._node_args(node, master))
        self._wait_replicas(master, len(self.nodes) - 1)
