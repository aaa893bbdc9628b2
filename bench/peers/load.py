"""The load client of the peers benchmark: one process of many WebSocket viewers, cheap per line.

    python -m bench.peers.load --url ws://127.0.0.1:8080/ws --proto ws --clients 200 --stream kafka:peers

A bare asyncio Protocol per connection that speaks just enough of each server's protocol
to subscribe (`--proto ws`: Tailgate's `{"op":"subscribe"}`, which the naive loop and the
Channels consumer speak too; `--proto sio`: Engine.IO 4 / Socket.IO 5 over a WebSocket,
a `subscribe` event). It never parses a line: lines are counted in bulk with one
`bytes.count` of the send-time mark (`@t=`, bench/peers/publish.py) per frame, straight
from the receive buffer, and each frame's FIRST (oldest) line gives its send time. Every
line of the frame is counted at that frame's latency, an upper bound for each of them,
whatever the server's framing (one line per frame or many).

It reads commands on stdin, one per line, and answers each with one JSON line:
  reset        zero the step's line count (answer {"ok": true})
  measure S    measure for S seconds: lines, frames, latency histogram (0.1 ms buckets, line
               weighted), this process's CPU
  total        lines received since `reset`, and how long ago the last one arrived
Run one process per core the load side may use (bench/peers/run.py does) and add up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from urllib.parse import urlparse

from bench.wsload import client_frame, upgrade_request

MARK = b"@t="


class Stats:
    def __init__(self) -> None:
        self.total = 0  # lines since `reset`
        self.last_line = 0.0
        self.measure = False
        self.lines = 0
        self.frames = 0
        self.bytes = 0
        self.hist: dict[int, int] = {}
        self.connected = 0
        self.subscribed = 0
        self.errors = 0
        self.closed = 0


class Viewer(asyncio.Protocol):
    """One WebSocket viewer of one stream."""

    def __init__(self, host: str, proto: str, path: str, stream: str, stats: Stats, ready: asyncio.Future) -> None:
        self.host = host
        self.proto = proto
        self.path = path
        self.stream = stream
        self.stats = stats
        self.ready = ready
        self.buf = bytearray()
        self.handshaken = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(upgrade_request(self.host, self.path))  # type: ignore[attr-defined]

    def send_text(self, text: str) -> None:
        self.transport.write(client_frame(text.encode()))

    def data_received(self, data: bytes) -> None:
        if not self.handshaken:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buf.startswith(b"HTTP/1.1 101"):
                self._failed(f"handshake refused: {bytes(self.buf[:80])!r}")
                return
            self.handshaken = True
            self.stats.connected += 1
            if self.proto == "ws":
                self.send_text(json.dumps({"op": "subscribe", "stream": self.stream}))
            data = bytes(self.buf[end + 4 :])
            self.buf.clear()
        if self.buf:
            self.buf += data
            data = self.buf
        rest = self._frames(data, time.time())
        self.buf = bytearray(data[rest:]) if rest < len(data) else bytearray()

    def _frames(self, buf: bytes | bytearray, now: float) -> int:
        """Handle every complete frame in `buf`; return where the incomplete rest starts."""
        stats = self.stats
        size = len(buf)
        pos = 0
        while size - pos >= 2:
            b0, n = buf[pos], buf[pos + 1] & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            start, end = pos + head, pos + head + n
            if end > size:
                break
            pos = end
            opcode = b0 & 0x0F
            if opcode in (0, 1, 2):
                count = buf.count(MARK, start, end)
                if not count:
                    self._control(bytes(buf[start:end]))
                    continue
                stats.total += count
                stats.last_line = now
                if stats.measure:
                    stats.lines += count
                    stats.frames += 1
                    stats.bytes += n
                    at = buf.find(MARK, start, end) + 3
                    sent_us = int(buf[at : buf.find(b" ", at, end)])
                    key = max(0, int(now * 1e6) - sent_us) // 100
                    stats.hist[key] = stats.hist.get(key, 0) + count
            elif opcode == 9:
                self.transport.write(client_frame(bytes(buf[start:end]), 10))
            elif opcode == 8:
                stats.closed += 1
                self.transport.close()
        return pos

    def _control(self, payload: bytes) -> None:
        """A message without lines: the subscribe handshake, keep-alives, errors."""
        if self.proto == "sio":
            if payload[:1] == b"2":  # Engine.IO ping: answer pong
                self.send_text("3")
            elif payload[:1] == b"0":  # Engine.IO open: join the default namespace
                self.send_text("40")
            elif payload[:2] == b"40":
                self.send_text("42" + json.dumps(["subscribe", {"stream": self.stream}]))
            elif payload.startswith(b'42["subscribed"'):
                self._subscribed()
            elif payload[:2] == b"44":
                self._failed(f"refused: {payload[:200]!r}")
        elif b'"subscribed"' in payload[:40]:
            self._subscribed()
        elif b'"error"' in payload[:40]:
            self._failed(f"error: {payload[:200]!r}")

    def _subscribed(self) -> None:
        self.stats.subscribed += 1
        if not self.ready.done():
            self.ready.set_result(None)

    def _failed(self, why: str) -> None:
        self.stats.errors += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost: {exc}"))


async def connect(url: str, proto: str, clients: int, stream: str, stats: Stats) -> list[Viewer]:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    path = "/socket.io/?EIO=4&transport=websocket" if proto == "sio" else parsed.path or "/ws"
    loop = asyncio.get_running_loop()
    viewers = []
    for _ in range(clients):
        viewer = Viewer(f"{host}:{port}", proto, path, stream, stats, loop.create_future())
        await loop.create_connection(lambda viewer=viewer: viewer, host, port)
        viewers.append(viewer)
    await asyncio.wait_for(asyncio.gather(*(v.ready for v in viewers)), 60)
    return viewers


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(stats: Stats, seconds: float) -> dict:
    stats.lines = stats.frames = stats.bytes = 0
    stats.hist = {}
    cpu0, t0 = cpu_seconds(), time.monotonic()
    stats.measure = True
    await asyncio.sleep(seconds)
    stats.measure = False
    wall = time.monotonic() - t0
    return {
        "lines": stats.lines,
        "frames": stats.frames,
        "bytes": stats.bytes,
        "seconds": wall,
        "cpu": round((cpu_seconds() - cpu0) / wall, 3),
        "hist": stats.hist,
        "closed": stats.closed,
        "errors": stats.errors,
    }


async def serve(args: argparse.Namespace) -> None:
    stats = Stats()
    started = time.monotonic()
    await connect(args.url, args.proto, args.clients, args.stream, stats)
    out = sys.stdout
    out.write(json.dumps({"event": "ready", "connected": stats.connected, "setup_s": time.monotonic() - started}))
    out.write("\n")
    out.flush()
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    while line := (await commands.readline()).decode().split():
        if line[0] == "reset":
            stats.total, answer = 0, {"ok": True}
        elif line[0] == "measure":
            answer = await measure(stats, float(line[1]))
        elif line[0] == "total":
            idle = time.time() - stats.last_line if stats.last_line else None
            answer = {"total": stats.total, "idle_s": idle, "closed": stats.closed}
        else:
            answer = {"error": f"unknown command {line[0]!r}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--proto", choices=["ws", "sio"], default="ws")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--stream", default="kafka:peers")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
