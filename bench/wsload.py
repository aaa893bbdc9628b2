"""An efficient WebSocket load generator for the gateway benchmarks.

A bare asyncio Protocol per connection: no per-frame JSON parsing. For each `lines`
frame it counts lines with one bytes.count and takes the publish time of the frame's
OLDEST line from its id (a Redis stream id starts with the XADD time in ms), so the
latency it reports is an upper bound for every line in the frame.

With `--mark M` (e.g. `@t=`) the lines' text carries their send time, in microseconds
after M (the end-to-end benchmark's producer writes it just before producing to Kafka): each
frame's oldest line then also gives send -> receive, and send -> XADD (the part before
the gateway), reported under "sent". With `--drain S` it keeps counting after the
measured window until no line came for S seconds, and reports every line received
since it was ready (`total_lines`), for the caller to compare with what was sent. Over
the window it also times its own event loop (`loadgen_lag_*`: how late a 5 ms sleep
wakes), so that its own stalls can be told from the server's.

Run as a process of its own (pinned to another core than the gateway):
    python -m bench.wsload --url ws://127.0.0.1:8080/ws --clients 500 --streams kafka:a --seconds 10
It prints one JSON object with what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import struct
import sys
import time
from array import array
from typing import Any
from urllib.parse import urlparse

ID_MARK = b'"id":"'


def upgrade_request(host: str, path: str) -> bytes:
    """The HTTP request that opens a WebSocket on `path` (a fresh key each time)."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{host}\r\n\r\n"
    ).encode()


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame (clients must mask)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


class Stats:
    def __init__(self) -> None:
        self.lines = 0
        self.frames = 0
        self.bytes = 0
        self.dropped = 0
        self.gaps = 0
        self.errors = 0
        self.latencies_ms: list[int] = []
        # with a send-time mark, per measured frame: send -> receive and send -> XADD (ms)
        self.sent_ms = array("d")
        self.sent_to_xadd_ms = array("d")
        self.total = 0  # lines since ready, measured or not
        self.last_line = 0.0  # time.monotonic() of the last lines frame
        self.subscribed = 0
        self.connected = 0
        self.closed = 0
        self.measure = False


class LoadClient(asyncio.Protocol):
    def __init__(
        self,
        host: str,
        path: str,
        streams: list[str],
        stats: Stats,
        ready: asyncio.Future[None],
        line_filter: dict[str, Any] | None = None,
        mark: bytes = b"",
    ) -> None:
        self.host = host
        self.mark = mark
        self.path = path
        self.streams = streams
        self.line_filter = line_filter or {}
        self.stats = stats
        self.ready = ready
        self.buf = bytearray()
        self.handshaken = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(upgrade_request(self.host, self.path))  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.handshaken:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buf.startswith(b"HTTP/1.1 101"):
                self.stats.errors += 1
                self.transport.close()
                return
            del self.buf[: end + 4]
            self.handshaken = True
            self.stats.connected += 1
            for stream in self.streams:
                command = {"op": "subscribe", "stream": stream, **self.line_filter}
                self.transport.write(client_frame(json.dumps(command).encode()))
            if not self.streams and not self.ready.done():
                self.ready.set_result(None)
        self._frames()

    def _frames(self) -> None:
        buf = self.buf
        pos = 0
        stats = self.stats
        while len(buf) - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if len(buf) - pos < 4:
                    break
                n = struct.unpack_from("!H", buf, pos + 2)[0]
                head = 4
            elif n == 127:
                if len(buf) - pos < 10:
                    break
                n = struct.unpack_from("!Q", buf, pos + 2)[0]
                head = 10
            if len(buf) - pos < head + n:
                break
            opcode = b0 & 0x0F
            payload = bytes(buf[pos + head : pos + head + n])
            pos += head + n
            if opcode == 1:
                self._message(payload)
            elif opcode == 9:
                self.transport.write(client_frame(payload, 10))
            elif opcode == 8:
                stats.closed += 1
                self.transport.close()
        del buf[:pos]

    def _message(self, payload: bytes) -> None:
        stats = self.stats
        if payload.startswith(b'{"type":"lines"'):
            count = payload.count(ID_MARK)
            stats.total += count
            stats.last_line = time.monotonic()
            if not stats.measure:
                return
            stats.lines += count
            stats.frames += 1
            stats.bytes += len(payload)
            now = time.time()
            at = payload.find(ID_MARK) + len(ID_MARK)
            published_ms = int(payload[at : payload.index(b"-", at)])
            stats.latencies_ms.append(int(now * 1000) - published_ms)
            if self.mark:
                at = payload.find(self.mark, at) + len(self.mark)
                sent_ms = int(payload[at : payload.index(b" ", at)]) / 1000
                stats.sent_ms.append(now * 1000 - sent_ms)
                stats.sent_to_xadd_ms.append(published_ms - sent_ms)
        elif b'"subscribed"' in payload[:30]:
            stats.subscribed += 1
            if not self.ready.done():
                self.ready.set_result(None)
        elif b'"dropped"' in payload[:30]:
            stats.dropped += json.loads(payload)["count"]
        elif b'"gap"' in payload[:30]:
            stats.gaps += 1
        elif b'"error"' in payload[:30]:
            stats.errors += 1
            if not self.ready.done():
                self.ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(str(exc)))


async def run(
    url: str,
    clients: int,
    streams: list[str],
    per_client: int,
    seconds: float,
    warmup: float,
    filters: list[dict[str, Any]] | None = None,
    mark: bytes = b"",
    drain: float = 0.0,
) -> dict:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    stats = Stats()
    loop = asyncio.get_running_loop()
    waits = []
    protos = []
    started = time.monotonic()
    for i in range(clients):
        mine = [streams[(i * per_client + k) % len(streams)] for k in range(per_client)] if streams else []
        ready = loop.create_future()
        line_filter = filters[i % len(filters)] if filters else None
        proto = LoadClient(f"{host}:{port}", parsed.path or "/ws", mine, stats, ready, line_filter, mark)
        await loop.create_connection(lambda proto=proto: proto, host, port)
        waits.append(ready)
        protos.append(proto)
        if len(waits) % 500 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*waits), 120)
    setup_s = time.monotonic() - started
    print(json.dumps({"event": "ready", "connected": stats.connected, "setup_s": round(setup_s, 2)}), flush=True)
    await asyncio.sleep(warmup)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    stats.measure = True
    lags = await loop_lag(seconds)
    stats.measure = False
    wall = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    lat = sorted(stats.latencies_ms)

    def pct(p: float) -> float | None:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None

    if drain:
        deadline = time.monotonic() + 60
        # lines arrive in data_received: there is no event to await, only their time
        while (quiet := time.monotonic() - max(stats.last_line, t0)) < drain and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(drain - quiet)
    for proto in protos:
        if proto.transport is not None:
            proto.transport.close()
    return {
        "event": "result",
        "clients": clients,
        "connected": stats.connected,
        "lines": stats.lines,
        "lines_per_s": round(stats.lines / wall),
        "frames_per_s": round(stats.frames / wall),
        "mbytes_per_s": round(stats.bytes / wall / 1e6, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": lat[-1] if lat else None,
        "dropped": stats.dropped,
        "gaps": stats.gaps,
        "errors": stats.errors,
        "closed_by_server": stats.closed,
        "loadgen_cpu": round(cpu / wall, 2),
        "loadgen_lag_p99_ms": round(lags[int(0.99 * len(lags))], 1) if lags else None,
        "loadgen_lag_max_ms": round(lags[-1], 1) if lags else None,
        "total_lines": stats.total,
        **({"sent": sent_split(stats)} if mark else {}),
    }


async def loop_lag(seconds: float, tick: float = 0.005) -> list[float]:
    """Sleep `tick` after `tick` for `seconds`; how late each wake-up was (ms), sorted: how
    long this process itself kept frames waiting (its CPU share, the core's other work)."""
    lags = []
    end = time.monotonic() + seconds
    while (now := time.monotonic()) < end:
        await asyncio.sleep(tick)
        lags.append((time.monotonic() - now - tick) * 1000)
    return sorted(lags)


def sent_split(stats: Stats) -> dict[str, Any]:
    """Send -> receive percentiles of the measured frames, send -> XADD beside them, and
    how the frames at or above the send -> receive p99 split their time: the median of
    each part over those frames (XADD's time has whole milliseconds: about 0.5 ms of it
    may belong to the other part)."""
    e2e, before = stats.sent_ms, stats.sent_to_xadd_ms
    if not e2e:
        return {}
    order = sorted(range(len(e2e)), key=e2e.__getitem__)
    sorted_before = sorted(before)
    n = len(order)
    tail = order[int(0.99 * n) :]
    tail_before = sorted(before[i] for i in tail)
    tail_after = sorted(e2e[i] - before[i] for i in tail)
    return {
        "p50_ms": round(e2e[order[n // 2]], 1),
        "p99_ms": round(e2e[order[int(0.99 * n)]], 1),
        "max_ms": round(e2e[order[-1]], 1),
        "to_xadd_p50_ms": round(sorted_before[n // 2], 1),
        "to_xadd_p99_ms": round(sorted_before[int(0.99 * n)], 1),
        "tail_frames": len(tail),
        "tail_to_xadd_median_ms": round(tail_before[len(tail) // 2], 1),
        "tail_xadd_to_receive_median_ms": round(tail_after[len(tail) // 2], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--streams", default="", help="comma-separated; clients spread over them")
    parser.add_argument("--per-client", type=int, default=1, help="streams each client subscribes to")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--regex", default="", help="a filter per client; {n} becomes the client's number")
    parser.add_argument(
        "--filters", default="", help="a JSON list of filters (subscribe fields), given to the clients in turn"
    )
    parser.add_argument("--mark", default="", help="the lines' text carries its send time (us) after this mark")
    parser.add_argument("--drain", type=float, default=0, help="after the window, count until S s without a line")
    parser.add_argument("--hold", action="store_true", help="idle mode: connect, report ready, wait for stdin EOF")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    streams = [s for s in args.streams.split(",") if s]
    if args.hold:
        asyncio.run(hold(args.url, args.clients, streams))
        return
    filters = json.loads(args.filters) if args.filters else None
    if args.regex:
        filters = [{"regex": args.regex.replace("{n}", str(i))} for i in range(args.clients)]
    mark = args.mark.encode()
    result = asyncio.run(
        run(args.url, args.clients, streams, args.per_client, args.seconds, args.warmup, filters, mark, args.drain)
    )
    print(json.dumps(result), flush=True)


async def hold(url: str, clients: int, streams: list[str]) -> None:
    """Open idle connections, report, and keep them until stdin closes."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    loop = asyncio.get_running_loop()
    stats = Stats()
    waits = []
    for i in range(clients):
        ready = loop.create_future()
        mine = [streams[i % len(streams)]] if streams else []
        await loop.create_connection(
            lambda ready=ready, mine=mine: LoadClient(f"{host}:{port}", "/ws", mine, stats, ready), host, port
        )
        waits.append(ready)
    await asyncio.wait_for(asyncio.gather(*waits), 300)
    print(json.dumps({"event": "ready", "connected": stats.connected}), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    main()
