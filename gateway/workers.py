"""`python -m gateway --workers N`: N worker processes sharing one port, under one supervisor.

The supervisor binds the port once and starts each worker as a fresh interpreter
(``python -m gateway --worker ...``) that inherits the listening socket. Every worker
accepts from that one queue, so a worker that dies loses no connection still queued,
and a port already in use fails the start instead of being shared with a stranger (as
SO_REUSEPORT would allow). A fresh interpreter rather than a fork: the supervisor runs an
event loop, and the child of a fork inherits it half-way through a callback.

Each worker is a whole gateway (`gateway.app.Gateway` with a `WorkerLink`): its own
Redis connections, hub and sessions; it takes connections from the shared socket only
once it reaches Redis (`Gateway._accept_once_ready`). The supervisor serves no viewer:

* it restarts a worker that exits, and logs it (the pause grows while workers keep dying young);
* on SIGTERM or SIGINT it sends SIGTERM to every worker, so they drain together (`/readyz`
  503, `gateway.drain_grace`, 1001), and exits 0 once all are gone; a repeated signal is
  harmless (a worker that is already draining ignores another);
* it sums their metrics (`gateway.metrics_sum`): each worker serves its own exposition on a
  unix socket in the supervisor's run directory (mode 0700), and `/metrics`, whichever
  worker answers it, is fetched from the supervisor, which reads every worker's and adds
  them up.

A worker whose supervisor is gone (SIGKILLed) drains and exits by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import tornado.netutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway.metrics_sum import MetricsSum
from settings import Settings

log = logging.getLogger(__name__)

SUM_SOCKET = "metrics.sock"
READ_TIMEOUT = 2.0  # to connect, and to read one worker's exposition
RESTART_PAUSES = (0.5, 1.0, 2.0, 5.0, 10.0)
STABLE_AFTER = 10.0  # a worker that ran this long before exiting is restarted after the shortest pause
STOP_MARGIN = 5.0  # beyond drain_grace + drain_timeout before a worker that will not stop is killed


def worker_count(setting: int) -> int:
    """`gateway.workers`: 0 means one per core this process may run on."""
    return setting if setting > 0 else len(os.sched_getaffinity(0))


def _own_socket(run_dir: Path, index: int) -> Path:
    return run_dir / f"worker-{index}.sock"


async def _read_all(path: Path, read_for: float = READ_TIMEOUT) -> bytes:
    """Everything a unix-socket server in the run directory writes before closing."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), READ_TIMEOUT)
    try:
        return await asyncio.wait_for(reader.read(), read_for)
    finally:
        writer.close()


def _how(code: int) -> str:
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"


class Supervisor:
    """Starts `count` workers on one listening socket, keeps them running, stops them together."""

    def __init__(self, settings: Settings, count: int, worker_args: list[str]) -> None:
        self.settings = settings
        self.count = count
        self.worker_args = worker_args  # what every worker gets on its command line
        self.dir = Path(tempfile.mkdtemp(prefix="tailgate-gateway-"))
        self.running: dict[int, asyncio.subprocess.Process] = {}  # by worker index
        self.last: dict[int, str] = {}  # by pid: the latest exposition read from that worker
        self.sum = MetricsSum()
        self.restarts = 0
        self._stop = asyncio.Event()

    async def run(self) -> int:
        conf = self.settings.gateway
        sockets = tornado.netutil.bind_sockets(conf.port, conf.host)
        fds = [sock.fileno() for sock in sockets]
        summing = await asyncio.start_unix_server(self._serve_sum, path=str(self.dir / SUM_SOCKET))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        log.info("gateway listening on http://%s:%d/ with %d workers", conf.host, conf.port, self.count)
        keepers = [asyncio.create_task(self._keep(i, fds)) for i in range(self.count)]
        await self._stop.wait()
        # The workers keep their own copies of the socket through their drain; this one
        # is only for starting workers, and none will be started now.
        for sock in sockets:
            sock.close()
        log.info("stopping: every worker drains")
        for proc in self.running.values():
            proc.send_signal(signal.SIGTERM)
        _, late = await asyncio.wait(keepers, timeout=conf.drain_grace + conf.drain_timeout + STOP_MARGIN)
        for proc in self.running.values():
            log.error("worker pid %d did not stop in time; killing it", proc.pid)
            proc.kill()
        await asyncio.gather(*late)
        summing.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        log.info("all workers stopped")
        return 0

    async def _keep(self, index: int, fds: list[int]) -> None:
        """Run worker `index` until stopping, starting another whenever it exits."""
        failures = 0
        args = [*self.worker_args, "--worker", str(index), "--worker-fds", ",".join(map(str, fds))]
        args += ["--worker-dir", str(self.dir)]
        while not self._stop.is_set():
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", *args, pass_fds=fds)
            self.running[index] = proc
            if self._stop.is_set():  # asked to stop while this one was starting
                proc.send_signal(signal.SIGTERM)
            code = await proc.wait()
            del self.running[index]
            self._retire(proc.pid)
            if self._stop.is_set():
                if code != 0:
                    log.warning("worker %d (pid %d) %s while stopping", index, proc.pid, _how(code))
                return
            failures = failures + 1 if time.monotonic() - started < STABLE_AFTER else 0
            pause = RESTART_PAUSES[min(failures, len(RESTART_PAUSES) - 1)]
            self.restarts += 1
            log.error("worker %d (pid %d) %s; starting another in %.1fs", index, proc.pid, _how(code), pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), pause)

    # Metrics ----------------------------------------------------------------------------

    def _retire(self, pid: int) -> None:
        text = self.last.pop(pid, None)
        if text is not None:
            self.sum.retire(text)

    async def _read_worker(self, index: int) -> str | None:
        """Worker `index`'s exposition now, or the last one read from it if it does not
        answer in time (a total must not dip because a worker is busy); None for a worker
        being replaced, whose counters are already kept by `_retire`."""
        proc = self.running.get(index)
        if proc is None:
            return None
        try:
            text = (await _read_all(_own_socket(self.dir, index))).decode()
            pid = int(text.split("\n", 1)[0].removeprefix("# pid "))
        except (OSError, TimeoutError, ValueError):
            return self.last.get(proc.pid)
        if self.running.get(index) is not proc:  # it exited meanwhile: `_retire` kept its counters
            return None
        if pid != proc.pid:  # a previous process's answer, or its successor's not yet known here
            return self.last.get(proc.pid)
        self.last[pid] = text
        return text

    def _own_metrics(self) -> list[Metric]:
        workers = GaugeMetricFamily("tailgate_gateway_workers", "Worker processes running")
        workers.add_metric([], len(self.running))
        restarts = CounterMetricFamily(
            "tailgate_gateway_worker_restarts", "Workers that exited unasked and were started again"
        )
        restarts.add_metric([], self.restarts)
        return [workers, restarts]

    async def _serve_sum(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            texts = await asyncio.gather(*(self._read_worker(i) for i in range(self.count)))
            writer.write(self.sum.total([t for t in texts if t is not None], self._own_metrics()))
            await writer.drain()
        except OSError as exc:
            log.warning("serving the summed metrics failed: %s", exc)
        finally:
            writer.close()


class WorkerLink:
    """A worker's side: the inherited listening sockets, its own exposition served to the
    supervisor, the sum fetched back for `/metrics`, and a watch on the supervisor."""

    def __init__(self, index: int, fds: list[int], run_dir: Path) -> None:
        self.index = index
        self.fds = fds
        self.run_dir = run_dir
        self.parent = os.getppid()
        self._server: asyncio.Server | None = None

    def sockets(self) -> list[socket.socket]:
        out = []
        for fd in self.fds:
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            out.append(sock)
        return out

    async def serve_own(self, render: Callable[[], Awaitable[bytes]]) -> None:
        """Answer the supervisor with this process's exposition, headed by its pid."""

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                writer.write(f"# pid {os.getpid()}\n".encode() + await render())
                await writer.drain()
            except OSError:
                pass  # the supervisor gave up waiting; it uses the last answer
            finally:
                writer.close()

        path = _own_socket(self.run_dir, self.index)
        path.unlink(missing_ok=True)  # left by the worker this one replaces
        self._server = await asyncio.start_unix_server(answer, path=str(path))

    async def fleet_metrics(self) -> bytes:
        """The sum over every worker (raises OSError or TimeoutError if the supervisor does not answer)."""
        # The supervisor may wait out a worker that does not answer (connecting, then reading).
        body = await _read_all(self.run_dir / SUM_SOCKET, read_for=2 * READ_TIMEOUT + 1)
        if not body:
            raise OSError("the supervisor sent no metrics")
        return body

    async def watch_parent(self) -> None:
        """Drain and exit, as on SIGTERM, once the supervisor is gone (its pidfd turns readable)."""
        gone = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ProcessLookupError):  # gone before the watch began
            pidfd = os.pidfd_open(self.parent)
            loop.add_reader(pidfd, gone.set)
            try:
                if os.getppid() == self.parent:
                    await gone.wait()
            finally:
                loop.remove_reader(pidfd)
                os.close(pidfd)
        log.warning("the supervisor (pid %d) is gone: draining", self.parent)
        os.kill(os.getpid(), signal.SIGTERM)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
