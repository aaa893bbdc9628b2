"""Tailgate tail agent: follows one file on this minion and publishes its lines to Redis.

Deployed by the `logtail` Salt formula next to the shared `wire` package and started on
demand by the `logtail` execution module (never by hand, never through a shell):

    python logtail_agent.py --config /etc/tailgate/logtail.json --minion-id web1 --path /var/log/app.log

It follows the file like ``tail -F`` (rotation by rename, copy-truncate, a file that
does not exist yet, for at most ``late_file_wait`` seconds), starts with the file's last
lines, and publishes batches through `wire.Publisher`, the same atomic history-and-publish
step the bridge uses. Every open, the first and each one after a rotation, goes through
`wire.filepolicy.open_checked`: a link or a FIFO planted in an allowed directory is
refused, and the agent stops, saying why in its lock file (the execution module reports
it) and its log. One agent per file per minion: it holds an flock on a lock file for its
whole life and writes its pid there. It keeps a heartbeat key in Redis and exits once no
gateway has wanted its stream for the grace period, so a crashed gateway never leaves a
tail behind. While Redis is unreachable it keeps reading into a bounded buffer and, on
reconnect, publishes a line saying how many lines it had to drop. Its Redis is one node
or, in sentinel mode, the master the sentinels name (`wire.connect`, asked again at every
heartbeat), so it follows a failover like the gateways and the bridge.

Standard library, redis-py and the `wire` package only.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, BinaryIO

import redis
from redis.exceptions import RedisClusterException

from wire import Keys, Line, Publisher, StreamBatch, encode_line, filepolicy
from wire.connect import Connector, RedisTarget
from wire.envelope import TRUNCATION_MARKER, clean_text
from wire.lifecycle import RELEASE_LUA, WANTED_LUA, alive_value
from wire.names import StreamNameError, check_minion, file_stream

log = logging.getLogger("logtail-agent")

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_ALREADY_RUNNING = 3
EXIT_REFUSED = 4
READ_CHUNK = 256 * 1024
MAX_READ_PER_POLL = 4 * 1024 * 1024
TAIL_SCAN_LIMIT = 8 * 1024 * 1024
REWRITE_CHECK_BYTES = 64


@dataclass
class AgentConfig:
    """The agent's settings, from the JSON file the formula renders from its whole map.

    No defaults here: they live in the formula's defaults.yaml only, and a key missing
    from the file is an error. Keys the agent does not use (install paths, packages) are
    ignored.
    """

    redis_mode: str
    redis_url: str
    redis_sentinels: list[str]
    redis_master_name: str
    redis_sentinel_username: str
    redis_sentinel_password: str
    redis_cluster_nodes: list[str]
    key_prefix: str
    allowlist: list[str]
    grace_period: float
    max_line_bytes: int
    initial_lines: int
    batch_max_lines: int
    poll_interval: float
    heartbeat_interval: float
    alive_ttl: float
    buffer_max_lines: int
    history_maxlen: int
    max_outage: float
    late_file_wait: float
    run_dir: str
    log_dir: str

    @classmethod
    def load(cls, path: str) -> AgentConfig:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict):
            raise ValueError("the config must be a JSON object")
        missing = sorted(set(cls.__dataclass_fields__) - set(data))
        if missing:
            raise ValueError(f"missing {', '.join(missing)} (the formula renders every key: state.apply logtail)")
        casts: dict[Any, Any] = {"float": float, "int": int}
        conf = cls(**{k: casts.get(f.type, _same)(data[k]) for k, f in cls.__dataclass_fields__.items()})
        conf.redis_target()  # a Redis that cannot be named stops the start (RedisTargetError)
        return conf

    def redis_target(self) -> RedisTarget:
        """Where the agent's Redis is, named after the pillar keys in messages."""
        return RedisTarget(
            self.redis_mode,
            self.redis_url,
            self.redis_sentinels,
            self.redis_master_name,
            self.redis_sentinel_username,
            self.redis_sentinel_password,
            where="logtail:redis_",
            cluster_nodes=self.redis_cluster_nodes,
        )


def _same(value: Any) -> Any:
    return value


def lock_name(path: str) -> str:
    """The lock/pid file name of the agent for `path` (shared with the execution module)."""
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:32]


class Follower:
    """Reads complete lines from a file the way ``tail -F`` follows it.

    Once it refuses what the path leads to, or a file that never appeared has been waited
    for `late_file_wait` seconds, `stopped` holds ``(error code, message)`` and it reads no more.
    """

    def __init__(
        self, path: str, initial_lines: int, max_line_bytes: int, allowlist: list[str], late_file_wait: float
    ) -> None:
        self.path = path
        self.initial_lines = initial_lines
        self.max_line_bytes = max_line_bytes
        self.allowlist = allowlist
        self.late_file_wait = late_file_wait
        self.waiting_since: float | None = time.monotonic()  # None once the file has been opened
        self.stopped: tuple[str, str] | None = None
        self.fh: BinaryIO | None = None
        self.ident: tuple[int, int] | None = None
        self.partial = bytearray()
        self.overflow = 0
        self.first_open = True
        self.missing_logged = False
        self.last_bytes = b""

    def _open(self) -> bool:
        try:
            fd = filepolicy.open_checked(self.path, self.allowlist, allowlist="this minion's allowlist")
        except filepolicy.Refused as exc:
            self.stopped = (exc.refusal.code, exc.refusal.message)
            return False
        except FileNotFoundError:
            if not self.missing_logged:
                log.info("%s does not exist (yet); waiting for it", self.path)
                self.missing_logged = True
            self.first_open = False
            self._give_up_waiting()
            return False
        except OSError as exc:
            if not self.missing_logged:
                log.warning("cannot open %s: %s; retrying", self.path, exc)
                self.missing_logged = True
            self._give_up_waiting(f" (cannot open it: {exc.strerror})")
            return False
        fh = os.fdopen(fd, "rb")  # kept open across polls
        st = os.fstat(fd)
        self.fh, self.ident, self.missing_logged, self.waiting_since = fh, (st.st_dev, st.st_ino), False, None
        self.last_bytes = b""
        if self.first_open:
            fh.seek(self._tail_offset(fh, st.st_size))
        self.first_open = False
        log.info("following %s (inode %d) from byte %d", self.path, st.st_ino, fh.tell())
        return True

    def _give_up_waiting(self, detail: str = "") -> None:
        """Stop once a file never opened has been waited for `late_file_wait` seconds."""
        if self.waiting_since is not None and time.monotonic() - self.waiting_since >= self.late_file_wait:
            self.stopped = ("unreadable", f"{self.path} did not appear within {self.late_file_wait:g}s{detail}")

    def _tail_offset(self, fh: BinaryIO, size: int) -> int:
        """Where the last `initial_lines` complete lines (and any partial one) start."""
        if self.initial_lines <= 0 or size == 0:
            return size
        pos, newlines = size, 0
        fh.seek(size - 1)
        wanted = self.initial_lines + (1 if fh.read(1) == b"\n" else 0)
        while pos > 0 and size - pos < TAIL_SCAN_LIMIT:
            step = min(READ_CHUNK, pos)
            pos -= step
            fh.seek(pos)
            block = fh.read(step)
            for i in range(len(block) - 1, -1, -1):
                if block[i] == 0x0A:
                    newlines += 1
                    if newlines == wanted:
                        return pos + i + 1
        if pos == 0:
            return 0
        fh.seek(pos)  # scanned as far as we go: start at the next line boundary, not mid-line
        nl = fh.read(self.max_line_bytes + 2).find(b"\n")
        return pos + nl + 1 if nl >= 0 else size

    def _read_available(self, out: list[str]) -> int:
        assert self.fh is not None
        total = 0
        while total < MAX_READ_PER_POLL:
            data = self.fh.read(READ_CHUNK)
            if not data:
                break
            total += len(data)
            self.last_bytes = (self.last_bytes + data[-REWRITE_CHECK_BYTES:])[-REWRITE_CHECK_BYTES:]
            self._split(data, out)
        return total

    def _split(self, data: bytes, out: list[str]) -> None:
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                self._keep(data[start:])
                return
            self._keep(data[start:nl])
            out.append(self._take_line())
            start = nl + 1

    def _keep(self, piece: bytes) -> None:
        room = self.max_line_bytes + 4 - len(self.partial)
        if room > 0:
            self.partial += piece[:room]
        self.overflow += max(0, len(piece) - max(room, 0))

    def _take_line(self) -> str:
        raw = bytes(self.partial)
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        extra = self.overflow
        self.partial.clear()
        self.overflow = 0
        if extra:
            cut = raw[: self.max_line_bytes]
            return cut.decode("utf-8", "ignore") + TRUNCATION_MARKER.format(n=len(raw) - len(cut) + extra)
        return clean_text(raw, self.max_line_bytes)

    def _flush_partial(self, out: list[str]) -> None:
        if self.partial or self.overflow:
            out.append(self._take_line())

    def _close(self) -> None:
        if self.fh is not None:
            self.fh.close()
        self.fh, self.ident = None, None

    def _rewritten(self) -> bool:
        """True when the bytes just before our position are no longer what we read there:
        the file was truncated (copy-truncate) and possibly written past our offset since."""
        assert self.fh is not None
        n, pos = len(self.last_bytes), self.fh.tell()
        if n == 0 or pos < n:
            return False
        try:
            return os.pread(self.fh.fileno(), n, pos - n) != self.last_bytes
        except OSError:
            return False

    def _restart_from_top(self, out: list[str], why: str) -> None:
        assert self.fh is not None
        log.info("%s was truncated (%s); reading from its start", self.path, why)
        self._flush_partial(out)
        self.fh.seek(0)
        self.last_bytes = b""

    def poll(self) -> list[str]:
        """Lines that became available since the last poll (rotation handled)."""
        out: list[str] = []
        if self.stopped is not None or (self.fh is None and not self._open()):
            return out
        assert self.fh is not None
        if self._rewritten():
            self._restart_from_top(out, "rewritten before our position")
        if self._read_available(out):
            return out
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return out  # renamed away, new file not there yet: keep the old one open
        except OSError as exc:
            log.warning("stat %s: %s", self.path, exc)
            return out
        if (st.st_dev, st.st_ino) != self.ident:
            self._read_available(out)  # whatever was written to the old file before the switch
            self._flush_partial(out)
            log.info("%s was rotated (new inode %d); reopening from its start", self.path, st.st_ino)
            self._close()
            if self._open():  # checked again: the new file is whatever the name leads to now
                self._read_available(out)
        elif st.st_size < self.fh.tell():
            self._restart_from_top(out, f"{st.st_size} < {self.fh.tell()} bytes")
            self._read_available(out)
        return out

    def close(self) -> None:
        self._close()


class RedisLink:
    """The agent's client and what is built on it. Built on first use, not at the start:
    redis-py's cluster client asks a node for the slot map as it is made, so an agent
    started while no cluster node answers must buffer like one whose Redis went away."""

    def __init__(self, redis: Connector, keys: Keys, history_maxlen: int) -> None:
        self.client = redis.client("tailgate-logtail", socket_connect_timeout=2, socket_timeout=5)
        self.publisher = Publisher(self.client, keys, history_maxlen)
        self.wanted = self.client.register_script(WANTED_LUA)
        self.release = self.client.register_script(RELEASE_LUA)


class Agent:
    """The publish loop: follow, buffer, publish, heartbeat, exit when unwanted."""

    def __init__(self, conf: AgentConfig, minion: str, path: str, lock_fd: int) -> None:
        self.conf = conf
        self.lock_fd: int | None = lock_fd
        self.stream = file_stream(minion, path).name
        self.path = path
        target = conf.redis_target()
        self.keys = target.keys(conf.key_prefix)
        self.redis = Connector(target)
        self.link: RedisLink | None = None
        self.follower = Follower(path, conf.initial_lines, conf.max_line_bytes, conf.allowlist, conf.late_file_wait)
        self.buffer: collections.deque[Line] = collections.deque()
        self.dropped = 0
        self.dropped_total = 0
        self.stopping = False
        self.alive = alive_value()
        self.redis_ok = True
        self.down_since: float | None = None
        self.retry_at = 0.0
        self.backoff = 0.25

    def stop(self, *_: Any) -> None:
        self.stopping = True

    def _buffer(self, texts: list[str]) -> None:
        now = time.time()
        for text in texts:
            if len(self.buffer) >= self.conf.buffer_max_lines:
                if not self.dropped:
                    log.warning("buffer full (%d lines): dropping the oldest lines", self.conf.buffer_max_lines)
                self.buffer.popleft()
                self.dropped += 1
            self.buffer.append(Line(now, text))

    def _linked(self) -> RedisLink:
        if self.link is None:
            self.link = RedisLink(self.redis, self.keys, self.conf.history_maxlen)
        return self.link

    def _publish(self) -> None:
        publisher = self._linked().publisher
        if self.dropped:
            notice = f"[tailgate] {self.dropped} lines of {self.path} were dropped while Redis was unreachable"
            meta = {"tailgate": "dropped", "count": self.dropped}
            publisher.publish([StreamBatch(self.stream, [(0, encode_line(Line(time.time(), notice, meta)))])])
            log.warning("%s (buffer of %d lines was full)", notice, self.conf.buffer_max_lines)
            self.dropped_total += self.dropped
            self.dropped = 0
        while self.buffer:
            n = min(len(self.buffer), self.conf.batch_max_lines)
            batch = StreamBatch(self.stream, [(0, encode_line(self.buffer[i])) for i in range(n)])
            publisher.publish([batch])
            for _ in range(n):
                self.buffer.popleft()

    def _heartbeat(self) -> bool:
        """Renew the heartbeat; False once nobody has wanted the stream (lease check)."""
        self.redis.follow()
        link = self._linked()
        link.client.set(self.keys.tail_alive(self.stream), self.alive, px=int(self.conf.alive_ttl * 1000))
        return int(link.wanted(keys=[self.keys.tail_wanted(self.stream)])) > 0

    def _redis_step(self, now: float, due_heartbeat: bool) -> bool | None:
        """Publish and (when due) heartbeat; returns wanted-ness or None when not checked."""
        if not self.redis_ok and now < self.retry_at:
            return None
        try:
            wanted = self._heartbeat() if due_heartbeat or not self.redis_ok else None
            self._publish()
        except (redis.RedisError, RedisClusterException, OSError) as exc:
            if self.redis_ok:
                log.warning("redis unreachable (%s); buffering up to %d lines", exc, self.conf.buffer_max_lines)
                self.down_since = now
            self.redis_ok = False
            self.retry_at = now + self.backoff
            self.backoff = min(self.backoff * 2, 5.0)
            return None
        if not self.redis_ok:
            log.info("redis reachable again after %.1fs", now - (self.down_since or now))
        self.redis_ok, self.down_since, self.backoff = True, None, 0.25
        return wanted

    def run(self) -> int:
        log.info("agent for %s starting (pid %d, grace %.1fs)", self.stream, os.getpid(), self.conf.grace_period)
        last_wanted = time.monotonic()
        next_beat = 0.0
        try:
            while not self.stopping:
                self._buffer(self.follower.poll())
                if self.follower.stopped is not None:
                    log.error("stopping: %s", self.follower.stopped[1])
                    break
                now = time.monotonic()
                due = now >= next_beat
                if due:
                    next_beat = now + self.conf.heartbeat_interval
                wanted = self._redis_step(now, due)
                if wanted:
                    last_wanted = now
                elif wanted is False and now - last_wanted > self.conf.grace_period:
                    log.info("no gateway has wanted %s for %.1fs; exiting", self.stream, now - last_wanted)
                    break
                if not self.redis_ok:
                    last_wanted = max(last_wanted, now - self.conf.grace_period / 2)
                    if self.down_since is not None and now - self.down_since > self.conf.max_outage:
                        log.error("redis unreachable for %.0fs; exiting", now - self.down_since)
                        break
                if not self.buffer or not self.redis_ok:
                    time.sleep(self.conf.poll_interval)
        finally:
            self._shutdown()
        return EXIT_OK if self.follower.stopped is None else EXIT_REFUSED

    def _shutdown(self) -> None:
        self._buffer(self.follower.poll())
        self.follower.close()
        # The lock goes (with the reason for a refusal in it) before the heartbeat: a gateway
        # that sees the heartbeat gone asks the module at once, which must find this agent
        # gone and why, not an agent still holding its lock.
        with contextlib.suppress(redis.RedisError, RedisClusterException, OSError):
            self._publish()
        self.unlock()
        with contextlib.suppress(redis.RedisError, RedisClusterException, OSError):
            self._linked().release(keys=[self.keys.tail_alive(self.stream)], args=[self.alive])
        if self.buffer or self.dropped:
            log.warning("exiting with %d lines unpublished", len(self.buffer) + self.dropped)
        log.info("agent for %s stopped (%d lines dropped in total)", self.stream, self.dropped_total)
        self.redis.close()

    def unlock(self) -> None:
        """Let go of the agent lock, first recording why the agent stopped if it was refused."""
        if self.lock_fd is None:
            return
        if self.follower.stopped is not None:
            error, message = self.follower.stopped
            record = {"pid": os.getpid(), "path": self.path, "stopped": round(time.time(), 3)}
            write_record(self.lock_fd, {**record, "error": error, "message": message})
        os.close(self.lock_fd)
        self.lock_fd = None


def take_lock(run_dir: str, path: str) -> int | None:
    """Hold this file's agent lock and record our pid in it; None when another agent has it."""
    os.makedirs(run_dir, mode=0o750, exist_ok=True)
    fd = os.open(os.path.join(run_dir, lock_name(path) + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    write_record(fd, {"pid": os.getpid(), "path": path, "started": round(time.time(), 3)})
    return fd


def write_record(fd: int, record: dict[str, Any]) -> None:
    """Replace the lock file's record (read by the execution module: pid, path, and why
    the agent stopped, when it was refused)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)


def refusal(conf: AgentConfig, minion: str, path: str) -> str | None:
    """Why this path may not be tailed here (the module checked too; we check again)."""
    try:
        check_minion(minion)
    except StreamNameError as exc:
        return str(exc)
    refused = filepolicy.refusal(path, conf.allowlist, allowlist="this minion's allowlist")
    return None if refused is None else refused.message


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tailgate tail agent (started by the logtail execution module)")
    parser.add_argument("--config", required=True, help="agent config (JSON, rendered by the logtail formula)")
    parser.add_argument("--minion-id", required=True, help="this minion's id, as in the stream name")
    parser.add_argument("--path", required=True, help="absolute path of the file to follow")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s logtail-agent[%(process)d]: %(message)s")
    try:
        conf = AgentConfig.load(args.config)
    except (OSError, ValueError, TypeError) as exc:
        log.error("cannot read config %s: %s", args.config, exc)
        return EXIT_USAGE
    reason = refusal(conf, args.minion_id, args.path)
    if reason:
        log.error("refusing to tail: %s", reason)
        return EXIT_REFUSED
    fd = take_lock(conf.run_dir, args.path)
    if fd is None:
        log.info("another agent already follows %s; exiting", args.path)
        return EXIT_ALREADY_RUNNING
    agent = Agent(conf, args.minion_id, args.path, fd)
    signal.signal(signal.SIGTERM, agent.stop)
    signal.signal(signal.SIGINT, agent.stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        return agent.run()
    finally:
        agent.unlock()


if __name__ == "__main__":
    sys.exit(main())
