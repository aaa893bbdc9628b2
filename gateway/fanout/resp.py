"""A minimal Redis pub/sub connection: RESP over an asyncio stream, parsed by hiredis.

The gateway's pub/sub connection carries every live line of every watched stream, tens
of thousands of messages a second on a busy process. redis-py's PubSub reads them one at
a time, each behind a retry wrapper and a timeout context, which costs more than the
fan-out itself. This connection reads whatever the socket has in one call and parses
every complete message in it at once. It does only what a subscriber needs: connect,
authenticate, name itself, SUBSCRIBE, UNSUBSCRIBE, PING, read; on a cluster node also
SSUBSCRIBE, SUNSUBSCRIBE and CLUSTER SLOTS (fanout/shards.py). Reconnecting is the
caller's job (the hub's stream list is the truth to resubscribe from).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import hiredis
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

READ_CHUNK = 1 << 18


def _command(*args: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RespConnection:
    """One RESP2 connection in subscriber mode."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = hiredis.Reader(replyError=ResponseError)

    @classmethod
    async def open(
        cls, url: str, client_name: str, connect_timeout: float = 3.0, address: tuple[str, int] | None = None
    ) -> RespConnection:
        """Connect to the Redis at `url` (redis:// or rediss://, with credentials if any),
        or at `address` with `url`'s credentials and TLS (a cluster node)."""
        opts: dict[str, Any] = parse_url(url)
        if address is not None:
            opts.update(host=address[0], port=address[1], path=None)
        context = ssl.create_default_context() if url.startswith("rediss://") else None
        path = opts.get("path")
        try:
            if path:
                reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), connect_timeout)
            else:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(opts.get("host", "127.0.0.1"), opts.get("port", 6379), ssl=context),
                    connect_timeout,
                )
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to redis: {exc}") from None
        conn = cls(reader, writer)
        try:
            setup = []
            if opts.get("password"):
                setup.append(
                    ("AUTH", opts["username"], opts["password"]) if opts.get("username") else ("AUTH", opts["password"])
                )
            setup.append(("CLIENT", "SETNAME", client_name))
            for cmd in setup:
                conn._writer.write(_command(*cmd))
            replies = await asyncio.wait_for(conn._replies(len(setup)), connect_timeout)
            for reply in replies:
                if isinstance(reply, ResponseError):
                    raise reply
        except BaseException:
            conn.close()
            raise
        return conn

    async def _replies(self, count: int) -> list[Any]:
        out: list[Any] = []
        while len(out) < count:
            out += await self.read()
        return out

    def subscribe(self, *channels: str) -> None:
        self._writer.write(_command("SUBSCRIBE", *channels))

    def unsubscribe(self, *channels: str) -> None:
        self._writer.write(_command("UNSUBSCRIBE", *channels))

    def ssubscribe(self, channel: str) -> None:
        self._writer.write(_command("SSUBSCRIBE", channel))

    def sunsubscribe(self, channel: str) -> None:
        self._writer.write(_command("SUNSUBSCRIBE", channel))

    def send(self, *args: str) -> None:
        """Any other command (CLUSTER SLOTS on a connection not yet subscribed)."""
        self._writer.write(_command(*args))

    def ping(self) -> None:
        self._writer.write(_command("PING"))

    async def read(self) -> list[Any]:
        """Every complete reply the socket has (waiting for at least one)."""
        parser = self._parser
        out: list[Any] = []
        while not out:
            data = await self._reader.read(READ_CHUNK)
            if not data:
                raise RedisConnectionError("connection closed by redis")
            parser.feed(data)
            reply = parser.gets()
            while reply is not False:
                out.append(reply)
                reply = parser.gets()
        return out

    def close(self) -> None:
        self._writer.close()
