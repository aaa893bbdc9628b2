"""Peer: python-socketio with AsyncRedisManager, served by uvicorn (runs in .venv-peers).

    PEERS_REDIS_URL=redis://... uvicorn bench.peers.sio_app:app

A `subscribe` event with `{"stream": ...}` puts the client in the stream's room and is
answered with a `subscribed` event; lines arrive from the publisher through Redis
(`AsyncRedisManager.emit` to the room), one `lines` event per published message, which
python-socketio encodes once and sends to every member of the room.
"""

from __future__ import annotations

import os

import socketio

mgr = socketio.AsyncRedisManager(os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/0"))
sio = socketio.AsyncServer(async_mode="asgi", client_manager=mgr, cors_allowed_origins="*", transports=["websocket"])


@sio.on("subscribe")
async def subscribe(sid: str, data: dict) -> None:
    room = data["stream"].split(":", 1)[-1]
    await sio.enter_room(sid, room)
    await sio.emit("subscribed", {"stream": data["stream"]}, to=sid)


app = socketio.ASGIApp(sio)
