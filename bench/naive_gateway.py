"""The baseline: a naive gateway, as a first attempt usually looks.

One Redis pub/sub connection too, but every message is parsed and every client's frame
is encoded with json.dumps separately, then written with write_message. Speaks enough
of the protocol (subscribe, lines) for the load generator.

    python -m bench.naive_gateway --redis URL --prefix P --port 8090
"""

from __future__ import annotations

import argparse
import asyncio
import json

import redis.asyncio as aioredis
import tornado.web
import tornado.websocket


class Naive(tornado.websocket.WebSocketHandler):
    def initialize(self, clients: dict[str, set[Naive]], subscribe) -> None:
        self.clients = clients
        self.subscribe = subscribe
        self.streams: set[str] = set()

    def check_origin(self, origin: str) -> bool:
        return True

    async def on_message(self, message: str | bytes) -> None:
        msg = json.loads(message)
        if msg.get("op") == "subscribe":
            stream = msg["stream"]
            self.streams.add(stream)
            self.clients.setdefault(stream, set()).add(self)
            await self.subscribe(stream)
            self.write_message(json.dumps({"type": "subscribed", "stream": stream}))

    def on_close(self) -> None:
        for s in self.streams:
            self.clients.get(s, set()).discard(self)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--prefix", default="tailgate:")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    clients: dict[str, set[Naive]] = {}
    r = aioredis.Redis.from_url(args.redis)
    pubsub = r.pubsub()
    await pubsub.connect()
    live = f"{args.prefix}live:"
    subscribed: set[str] = set()

    async def subscribe(stream: str) -> None:
        if stream not in subscribed:
            subscribed.add(stream)
            await pubsub.subscribe(live + stream)

    app = tornado.web.Application([(r"/ws", Naive, {"clients": clients, "subscribe": subscribe})])
    app.listen(args.port, "127.0.0.1")
    while True:
        msg = await pubsub.get_message(timeout=1.0)
        if msg is None or msg["type"] != "message":
            continue
        stream = msg["channel"].decode()[len(live) :]
        lines = json.loads(msg["data"].split(b"\n", 1)[1])
        for client in list(clients.get(stream, ())):
            client.write_message(json.dumps({"type": "lines", "stream": stream, "lines": lines}, separators=(",", ":")))


if __name__ == "__main__":
    asyncio.run(main())
