"""Peer: Django Channels with channels_redis, served by daphne (runs in .venv-peers).

    PEERS_REDIS_URL=redis://... PEERS_LAYER=pubsub|core daphne bench.peers.channels_app:application

The consumer speaks the load client's protocol: `{"op":"subscribe","stream":...}` joins
the group (answered with `subscribed`); every `log.lines` event sent to the group goes to
the client as `{"type":"lines","stream":...,"lines":[...]}`, encoded per client, as a
consumer is usually written. `PEERS_LAYER` picks channels_redis's pub/sub layer
(RedisPubSubChannelLayer: one SUBSCRIBE per group, fanned out in the process) or its
core layer (RedisChannelLayer: group_send pushes a copy to every member's list).
"""

from __future__ import annotations

import json
import os

import django
from django.conf import settings

LAYERS = {"pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer", "core": "channels_redis.core.RedisChannelLayer"}

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["channels"],
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": LAYERS[os.environ.get("PEERS_LAYER", "pubsub")],
                "CONFIG": {"hosts": [os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/0")]},
            }
        },
    )
    django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class LinesConsumer(AsyncWebsocketConsumer):
    groups_joined: list[str]

    async def connect(self) -> None:
        self.groups_joined = []
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        msg = json.loads(text_data or bytes_data or b"{}")
        if msg.get("op") == "subscribe":
            stream = msg["stream"]
            group = stream.split(":", 1)[-1]  # group names allow no ':'
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
            self.stream = stream
            await self.send(text_data=json.dumps({"type": "subscribed", "stream": stream}))

    async def log_lines(self, event: dict) -> None:
        await self.send(text_data=json.dumps({"type": "lines", "stream": self.stream, "lines": event["lines"]}))

    async def disconnect(self, code: int) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)


application = ProtocolTypeRouter({"websocket": URLRouter([path("ws", LinesConsumer.as_asgi())])})
