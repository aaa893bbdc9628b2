"""The paced publisher of the peers benchmark: the same lines, the same pacing, for every server.

    python -m bench.peers.publish --kind tailgate --redis URL --rate 1000 --seconds 10

Every `tick` milliseconds (10) it publishes the lines owed by then (`rate` per second
in all) as ONE message, the way each server is fed in practice:
  tailgate         the real publish step (`wire.Publisher`: history stream + live channel);
                   the naive Tornado loop reads the same live channel
  channels-pubsub  `group_send` on channels_redis's RedisPubSubChannelLayer
  channels-core    `group_send` on channels_redis's RedisChannelLayer
  socketio         `AsyncRedisManager(write_only=True).emit` to the stream's room
Each line is 100 bytes of text that starts with its send time, `@t=<microseconds>`
(taken just before the publish call), which the load client reads back to measure
publish-to-receive on its own clock, whatever the server's framing. When done it prints
one JSON object: how many lines it published and how far its ticks slipped.

`--per-line`: each line is a message of its own (one publish step, `group_send` or `emit`
per line), the way an app forwarding Kafka records one by one feeds a server; each line
still carries its own send time.

Only the chosen kind's packages are imported: `tailgate` runs in the project's .venv,
the others in .venv-peers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable

STREAM = "kafka:peers"  # Tailgate's stream name; the peers' group/room is GROUP
GROUP = "peers"
LINE_BYTES = 100
MARK = "@t="

WORDS = ["GET", "POST", "/api/orders", "/api/cart", "200", "304", "404", "500", "upstream", "slow", "cache", "hit"]
random.seed(7)
BODIES = [" ".join(random.choice(WORDS) for _ in range(16)) for _ in range(997)]


def line_text(sent_us: int, seq: int) -> str:
    """A 100-byte line carrying its send time (plain ASCII: no JSON escape anywhere)."""
    text = f"{MARK}{sent_us} {seq:09d} 10.0.0.{seq % 250} {BODIES[seq % len(BODIES)]}"
    return text[:LINE_BYTES].ljust(LINE_BYTES, ".")


Sender = Callable[[list[str], float], Awaitable[None]]


def tailgate_sender(redis_url: str, prefix: str) -> Sender:
    import redis

    from wire import Keys, Line, Publisher, StreamBatch, encode_line

    pub = Publisher(redis.Redis.from_url(redis_url), Keys(prefix), maxlen=10_000)

    async def send(texts: list[str], ts: float) -> None:
        batch = StreamBatch(STREAM)
        batch.lines.extend((0, encode_line(Line(ts, text))) for text in texts)
        pub.publish([batch])

    return send


def channels_sender() -> Sender:
    from channels.layers import get_channel_layer

    import bench.peers.channels_app  # noqa: F401 - configures Django and the layer from the environment

    layer = get_channel_layer()

    async def send(texts: list[str], ts: float) -> None:
        await layer.group_send(GROUP, {"type": "log.lines", "lines": [{"ts": ts, "text": t} for t in texts]})

    return send


def socketio_sender(redis_url: str) -> Sender:
    import socketio

    mgr = socketio.AsyncRedisManager(redis_url, write_only=True)

    async def send(texts: list[str], ts: float) -> None:
        await mgr.emit("lines", {"stream": GROUP, "lines": [{"ts": ts, "text": t} for t in texts]}, room=GROUP)

    return send


async def publish(send: Sender, rate: float, seconds: float, tick: float, per_line: bool = False) -> dict:
    per_tick = rate * tick
    owed = 0.0
    seq = 0
    late = 0.0
    loop = asyncio.get_running_loop()
    print(json.dumps({"event": "publishing"}), flush=True)
    start = loop.time()
    next_tick = start
    while loop.time() - start < seconds:
        owed += per_tick
        count = int(owed)
        owed -= count
        if count:
            if per_line:
                for i in range(count):
                    now = time.time()
                    await send([line_text(int(now * 1e6), seq + i)], now)
            else:
                now = time.time()
                await send([line_text(int(now * 1e6), seq + i) for i in range(count)], now)
            seq += count
        next_tick += tick
        delay = next_tick - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late = max(late, -delay)
    return {"published": seq, "seconds": round(loop.time() - start, 2), "max_late_ms": round(late * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", required=True, choices=["tailgate", "channels-pubsub", "channels-core", "socketio"])
    parser.add_argument("--redis", required=True)
    parser.add_argument("--prefix", default="tailgate:", help="Tailgate's key prefix")
    parser.add_argument("--rate", type=float, required=True, help="lines per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--tick", type=float, default=10.0, help="milliseconds between publishes")
    parser.add_argument("--per-line", action="store_true", help="one message per line, not one per tick")
    args = parser.parse_args()

    async def run() -> dict:
        if args.kind == "tailgate":
            send = tailgate_sender(args.redis, args.prefix)
        elif args.kind == "socketio":
            send = socketio_sender(args.redis)
        else:
            send = channels_sender()
        return await publish(send, args.rate, args.seconds, args.tick / 1000.0, args.per_line)

    print(json.dumps(asyncio.run(run())), flush=True)


if __name__ == "__main__":
    main()
