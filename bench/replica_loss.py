"""What a viewer sees when its replica goes: how long its stream pauses.

    .venv/bin/python -m bench.replica_loss            # about 20 s

Three gateway replicas behind HAProxy (conf/haproxy.cfg as shipped, embedded/balancer.py),
30 viewers resuming through it with `since` the moment their connection ends (the
console waits 0.25 s first), 300 lines/s published through the real publish step. One
replica is SIGKILLed, then another drained with SIGTERM (`gateway.drain_grace` 3 s).
For every viewer that had to move, the pause is the time from the last lines it got
before its connection ended to the first it got after; every viewer must still hold
every line once, in order.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

import redis
import websockets

from embedded import RedisServer, free_port
from embedded.balancer import HAProxy
from tests.browser import PacedPublisher
from tests.support import GatewayProc, service_env
from wire import Keys, Publisher

STREAM = "kafka:loss"


class Viewer:
    def __init__(self, url: str) -> None:
        self.url = url
        self.ids: list[str] = []
        self.events: list[tuple[float, bool]] = []  # (when, True: lines arrived / False: connection ended)

    async def run(self) -> None:
        while True:
            ws = await websockets.connect(self.url, max_size=None)
            since = self.ids[-1] if self.ids else "0-0"
            await ws.send(json.dumps({"op": "subscribe", "stream": STREAM, "since": since}))
            try:
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame["type"] == "lines":
                        self.ids += [line["id"] for line in frame["lines"]]
                        self.events.append((time.monotonic(), True))
            except websockets.ConnectionClosed:
                pass
            # reconnect at once: the connection is over, with or without a closing handshake
            self.events.append((time.monotonic(), False))

    def pauses(self, since: float) -> list[float]:
        """For each connection that ended after `since`: last lines before it to first lines after."""
        out = []
        for i, (when, lines) in enumerate(self.events):
            if not lines and when >= since:
                before = next((t for t, ok in reversed(self.events[:i]) if ok), None)
                after = next((t for t, ok in self.events[i + 1 :] if ok), None)
                if before is not None and after is not None:
                    out.append(after - before)
        return out


def once_in_order(ids: list[str]) -> bool:
    keys = [tuple(map(int, i.split("-"))) for i in ids]
    return all(a < b for a, b in itertools.pairwise(keys))


def summary(what: str, pauses: list[float]) -> dict[str, object]:
    ms = sorted(p * 1000 for p in pauses)
    return {
        "event": what,
        "viewers_moved": len(ms),
        "pause_ms_median": round(statistics.median(ms)),
        "max_ms": round(ms[-1]),
    }


async def measure(balancer: HAProxy, replicas: list[GatewayProc], pub: Publisher) -> list[dict[str, object]]:
    viewers = [Viewer(f"ws://127.0.0.1:{balancer.port}/ws") for _ in range(30)]
    tasks = [asyncio.create_task(v.run()) for v in viewers]
    feeder = PacedPublisher(pub, STREAM, rate=300)
    feeder.start()
    results = []
    try:
        await asyncio.sleep(3)
        start = time.monotonic()
        replicas[0].kill()
        await asyncio.sleep(4)
        results.append(summary("replica SIGKILLed", [p for v in viewers for p in v.pauses(start)]))
        start = time.monotonic()
        replicas[1].signal(signal.SIGTERM)
        await asyncio.sleep(6)
        results.append(summary("replica drained (SIGTERM)", [p for v in viewers for p in v.pauses(start)]))
    finally:
        total = await asyncio.to_thread(feeder.stop)
        await asyncio.sleep(1)
        for task in tasks:
            task.cancel()
    whole = all(len(v.ids) == total and once_in_order(v.ids) for v in viewers)
    results.append({"event": "every viewer every line once, in order", "ok": whole, "lines": total})
    return results


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="tailgate-bench-loss-"))
    server = RedisServer(workdir=str(tmp)).start()
    env = service_env(
        TAILGATE_REDIS_URL=server.url,
        TAILGATE_REDIS_PREFIX="loss:",
        TAILGATE_SALT_MODE="off",
        TAILGATE_AUTH_TRUSTED_PROXIES="127.0.0.1",
        TAILGATE_GATEWAY_DRAIN_GRACE="3",
    )
    replicas = [GatewayProc(env, log_dir=tmp) for _ in range(3)]
    balancer = None
    try:
        for replica in replicas:
            replica.start(wait=False)
        for replica in replicas:
            replica.wait_ready()
        balancer = HAProxy(free_port(), [r.port for r in replicas], tmp).start()
        balancer.wait_servers([r.port for r in replicas])
        print(json.dumps({"at": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average_before": os.getloadavg()}))
        pub = Publisher(redis.Redis.from_url(server.url), Keys("loss:"))
        for result in asyncio.run(measure(balancer, replicas, pub)):
            print(json.dumps(result), flush=True)
    finally:
        if balancer is not None:
            balancer.stop()
        for replica in replicas:
            replica.stop()
        server.stop()


if __name__ == "__main__":
    main()
