"""A minimal Redis pub/sub connection: RESP over an asyncio stream, parsed by hiredis.

The gateway's pub/sub connection carries every live line of every watched stream, tens
of thousands of messages a second on a busy process. redis-py's PubSub reads them one at
a time, each behind a retry wrapper and a timeout context, which costs more than the
fan-out itself. This connection reads whatever the socket has in one call and parses
every complete message in it at once. It does only what a subscriber needs: connect
where `wire.connect` says (the node, the master the sentinels name, or a cluster node),
authenticate, name itself, check with ROLE that a sentinel's master is one, SUBSCRIBE,
UNSUBSCRIBE, PING, read; on a cluster node also SSUBSCRIBE, SUNSUBSCRIBE and CLUSTER
SLOTS (fanout/shards.py). Reconnecting is the caller's job (the hub's stream list is the
truth to resubscribe from), and so is noticing that the master moved (`address` says
where this connection went).
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from wire.connect import Address, Node, not_master_error, role_of

READ_CHUNK = 1 << 18


def _command(*args: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RespConnection:
    """One RESP2 connection in subscriber mode."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: Address) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = hiredis.Reader(replyError=ResponseError)
        self.address = address

    @classmethod
    async def open(cls, node: Node, client_name: str, connect_timeout: float = 3.0) -> RespConnection:
        """Connect to `node` as `wire.connect` describes it (`AsyncConnector.node()` or
        `node_at()`: TLS, credentials and all, ``rediss://`` with the URL's ``ssl_ca_certs``,
        ``ssl_certfile`` and ``ssl_keyfile``, as redis-py)."""
        try:
            if node.path:
                reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(node.path), connect_timeout)
            else:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(node.host, node.port, ssl=node.tls), connect_timeout
                )
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to redis: {exc}") from None
        conn = cls(reader, writer, node.address)
        try:
            setup: list[tuple[str, ...]] = []
            if node.password:
                setup.append(("AUTH", node.username, node.password) if node.username else ("AUTH", node.password))
            setup.append(("CLIENT", "SETNAME", client_name))
            if node.master_only:
                setup.append(("ROLE",))
            for cmd in setup:
                conn._writer.write(_command(*cmd))
            replies = await asyncio.wait_for(conn._replies(len(setup)), connect_timeout)
            for reply in replies:
                if isinstance(reply, ResponseError):
                    raise reply
            if node.master_only and role_of(replies[-1]) != "master":
                raise not_master_error(role_of(replies[-1]), node.address)
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
