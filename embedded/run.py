"""`python -m embedded.run` (what `make run` calls): the whole product on one machine.

Starts, each only if needed: Redis (reuses one already answering at the configured URL),
the embedded Kafka-compatible broker, the bridge, the gateway and a demo log producer;
prints the console URL; Ctrl-C (or SIGTERM) stops everything it started, in reverse.
Logs of every process go to run/logs/.

`TAILGATE_REPLICAS=N` (N > 1) runs the demo as a fleet: N gateways on ports of their
own behind HAProxy, which runs conf/haproxy.cfg as shipped (embedded/balancer.py) on the
usual port.

`TAILGATE_REDIS_MODE=cluster` runs it on a Redis Cluster: the one `TAILGATE_REDIS_CLUSTER_NODES`
seeds, or else three primaries and three replicas started here (embedded/cluster.py, in
run/cluster-<pid>/); every process, the Salt demo's included, gets the same mode and seeds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import redis

from embedded import producer
from embedded.balancer import HAProxy
from embedded.cluster import RedisClusterNodes
from embedded.salt_demo import SaltDemo, start_salt_demo
from embedded.services import (
    KafkaBroker,
    RedisServer,
    free_port,
    fresh_workdir,
    gateway_ready,
    kill_group,
    port_open,
    stop_process,
    wait_until,
)
from settings import load

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "run" / "logs"
log = logging.getLogger("tailgate.run")


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


class Stack:
    """The processes this run started, stopped in reverse order."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.servers: list[RedisServer | KafkaBroker] = []

    def add(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """A process started elsewhere (in a session of its own), watched and stopped like the rest."""
        self.procs.append((name, proc))

    def spawn(self, name: str, module: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        out = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((name, proc))
        return proc

    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [proc for _, proc in self.procs] + [s.proc for s in self.servers if s.proc is not None]

    def stop(self) -> None:
        for name, proc in reversed(self.procs):
            stop_process(proc, 8, name)
        for server in reversed(self.servers):
            server.stop()


class Asked:
    """What the operator asked for by signal. The handlers only set these flags: a handler
    that takes a lock (`threading.Event.set` does) deadlocks when the main thread it
    interrupted holds that lock."""

    def __init__(self) -> None:
        self.stop = False
        self.kill = False

    def to_stop(self, signum: int, frame: object) -> None:
        self.stop = True


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    LOGS.mkdir(parents=True, exist_ok=True)
    settings = load()
    count = replicas()
    env = {k: v for k, v in os.environ.items()}
    env["PYTHONPATH"] = str(ROOT)
    stack = Stack()
    stop = threading.Event()  # tells the feeder thread
    asked = Asked()
    feeder: threading.Thread | None = None
    salt_demo: SaltDemo | None = None
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, asked.to_stop)
    try:
        redis_url = settings.redis.url
        cluster_nodes = None
        if settings.redis.mode == "cluster":
            cluster_nodes = cluster_seeds(stack, settings.redis.cluster_nodes)
            env["TAILGATE_REDIS_CLUSTER_NODES"] = ",".join(cluster_nodes)
        elif redis_answers(redis_url):
            log.info("using the Redis already answering at %s", redis_url)
        else:
            port = urlparse(redis_url).port or 6379
            server = RedisServer(port=port if not port_open(port) else free_port(), workdir=str(ROOT / "run"))
            stack.servers.append(server.start())
            redis_url = server.url
            log.info("started redis-server at %s", redis_url)
        env["TAILGATE_REDIS_URL"] = redis_url

        bootstrap = os.environ.get("TAILGATE_KAFKA_BOOTSTRAP")
        if not bootstrap:
            broker = KafkaBroker(port=9092 if not port_open(9092) else free_port(), log_path=str(LOGS / "kafka.log"))
            stack.servers.append(broker.start())
            bootstrap = broker.bootstrap
            log.info("started the embedded Kafka broker (Tansu) at %s", bootstrap)
        env["TAILGATE_KAFKA_BOOTSTRAP"] = bootstrap
        create_topics(bootstrap, producer.TOPICS)
        env.setdefault("TAILGATE_BRIDGE_TOPICS", ",".join(producer.TOPICS))

        stack.spawn("bridge", "bridge", demo_bridge_env(env))
        salt_demo = start_salt_demo(ROOT, redis_url, settings.redis.prefix, cluster_nodes)  # None (warned): no Salt
        gw_env = dict(env)
        gw_env.update(salt_demo.gateway_env() if salt_demo else {"TAILGATE_SALT_MODE": "off"})
        gw_env.setdefault(
            "TAILGATE_GATEWAY_PORT", str(settings.gateway.port if not port_open(settings.gateway.port) else free_port())
        )
        port = int(gw_env["TAILGATE_GATEWAY_PORT"])
        serving = start_gateways(stack, gw_env, port, count)

        feeder = threading.Thread(target=producer.run, args=(bootstrap, stop), daemon=True)
        feeder.start()
        print(
            f"\n  Tailgate is running{serving}.  Console: http://127.0.0.1:{port}/\n"
            + (f"  A file on a Salt minion: {salt_demo.stream}\n" if salt_demo else "")
            + f"  Logs: {LOGS}\n  Ctrl-C stops everything.\n",
            flush=True,
        )
        # Up to here Ctrl-C aborts the start-up (KeyboardInterrupt); from here on it only
        # asks to stop, so it never lands half-way through a call the shutdown relies on.
        signal.signal(signal.SIGINT, asked.to_stop)
        while not asked.stop:
            time.sleep(0.5)
            for name, proc in stack.procs:
                if proc.poll() is not None:
                    log.error("%s exited with %s; see %s", name, proc.returncode, LOGS / f"{name}.log")
                    asked.stop = True
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        signal.signal(signal.SIGINT, lambda *_: kill_all(stack, salt_demo, asked))
        log.info("stopping everything this run started (Ctrl-C again kills it at once)")
        if feeder is not None:
            feeder.join(5)
        stack.stop()
        if salt_demo is not None:
            salt_demo.stop(graceful=not asked.kill)
    return 0


def cluster_seeds(stack: Stack, given: list[str]) -> list[str]:
    """The seeds of the Redis Cluster `given` (redis.cluster_nodes), or of three primaries
    and three replicas started here on free ports."""
    if given:
        log.info("using the Redis Cluster seeded by %s", ", ".join(given))
        return given
    cluster = RedisClusterNodes(workdir=str(fresh_workdir(ROOT / "run", "cluster")))
    # in the stack before they start: a start that fails half-way stops what it started
    stack.servers.extend(cluster.nodes)
    cluster.start()
    log.info("started a Redis Cluster (3 primaries, 3 replicas) at %s", ", ".join(cluster.seeds))
    return cluster.seeds


def replicas() -> int:
    """TAILGATE_REPLICAS: how many gateways the demo runs (1 unless set)."""
    value = os.environ.get("TAILGATE_REPLICAS", "").strip() or "1"
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"TAILGATE_REPLICAS must be a whole number of gateways, 1 or more, not {value!r}")
    return int(value)


def start_gateways(stack: Stack, env: dict[str, str], port: int, count: int) -> str:
    """One gateway on `port`; or `count` gateways on free ports behind HAProxy on `port`.
    Returns what the banner says about them."""
    if count == 1:
        gateway = stack.spawn("gateway", "gateway", env)
        wait_until(lambda: gateway.poll() is None and gateway_ready(port), 30, what="the gateway to be ready")
        return ""
    ports = [free_port() for _ in range(count)]
    # The balancer, on loopback, is the replicas' one trusted proxy (X-Forwarded-For).
    replica_env = dict(env, TAILGATE_AUTH_TRUSTED_PROXIES="127.0.0.1")
    gateways = [
        stack.spawn(f"gateway-{i + 1}", "gateway", dict(replica_env, TAILGATE_GATEWAY_PORT=str(p)))
        for i, p in enumerate(ports)
    ]
    for gateway, p in zip(gateways, ports, strict=True):
        wait_until(lambda g=gateway, p=p: g.poll() is None and gateway_ready(p), 30, what=f"the gateway on {p}")
    balancer = HAProxy(port, ports, ROOT / "run", LOGS / "haproxy.log").start()
    stack.add("haproxy", balancer.proc)
    balancer.wait_servers(ports)
    log.info("HAProxy on %d balancing gateways on %s", port, ", ".join(map(str, ports)))
    return f": {count} gateways (ports {', '.join(map(str, ports))}) behind HAProxy"


def kill_all(stack: Stack, salt_demo: SaltDemo | None, asked: Asked) -> None:
    """A second interrupt while stopping: kill whatever is still running, so an impatient
    Ctrl-C never leaves a daemon behind (they run in sessions of their own). `asked.kill`
    tells the rest of the shutdown not to ask Salt to stop the tail agents: a killed master can
    look alive for a moment after SIGKILL, and a `salt` call to it waits out its timeout.
    The agents stop by themselves once the killed gateway's lease ends and their grace
    period passes (15 s + 10 s in the demo)."""
    asked.kill = True
    log.warning("interrupted again: killing what is still running")
    for proc in stack.processes() + (salt_demo.pair.processes() if salt_demo else []):
        kill_group(proc)


DEMO_ROUTES = [
    # app-events also split into kafka:app-events/<service>, and kept whole
    {"topic": "app-events", "format": "json", "split_by": "field", "field": "service", "keep_whole": True},
]


def demo_bridge_env(env: dict[str, str]) -> dict[str, str]:
    """The demo bridge routes app-events by service: the config file in force plus
    DEMO_ROUTES when it has no routes of its own (written to run/bridge-demo.yaml). Being
    the only bridge, it takes every partition itself (the static split) unless told
    otherwise: that is instant, where a group join on the embedded broker takes ~23 s."""
    import yaml

    from settings.load import DEFAULT_CONFIG

    env = dict(env)
    env.setdefault("TAILGATE_BRIDGE_USE_GROUP", "false")
    source = Path(env.get("TAILGATE_CONFIG") or DEFAULT_CONFIG)
    data = (yaml.safe_load(source.read_text()) if source.exists() else None) or {}
    bridge = data.setdefault("bridge", {}) or {}
    data["bridge"] = bridge
    if bridge.get("routes"):
        return env
    bridge["routes"] = DEMO_ROUTES
    demo = ROOT / "run" / "bridge-demo.yaml"
    demo.write_text("# written by embedded/run.py for the demo bridge\n" + yaml.safe_dump(data, sort_keys=False))
    return dict(env, TAILGATE_CONFIG=str(demo))


def create_topics(bootstrap: str, topics: tuple[str, ...]) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(t, 3, 1) for t in topics if t not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
    finally:
        admin.close()


if __name__ == "__main__":
    sys.exit(main())
