"""The live reader on Redis Cluster: one sharded pub/sub connection per shard primary.

Same role and interface as `LiveReader` (fanout/live.py) for `redis.mode: cluster`. A
stream's live channel is in its own slot (wire/keys.py), published with SPUBLISH, so it
is read with SSUBSCRIBE on the primary owning that slot: the reader keeps one connection
per primary that owns slots (not per stream, not per client), learnt from CLUSTER SLOTS;
SSUBSCRIBE on a stream's first viewer, SUNSUBSCRIBE on its last, each sent to its owner.

Topology changes: a slot's old owner pushes `sunsubscribe` (one not asked for) or answers
SSUBSCRIBE with MOVED; a failed primary's connection is lost. Either way the reader does
what `LiveReader` does after a lost connection, for every shard at once: subscriptions are
held (`on_lost`), the slot map is read again, each stream is subscribed on its owner now,
and once every SSUBSCRIBE is confirmed every client resumes from its cursor and epoch
(`on_reconnected`: orchestrator.resume_all, reading history on the owning shard): every
line once, or an explicit `gap` when the new owner lacks lines. Resuming every shard's
viewers, not only the moved slot's, costs a history read per subscription on a rare event
and keeps one resume path for every fault.

Invariants: as for `LiveReader` (nothing is live while a connection is missing; a resume
belongs to one generation of connections); each connection's reads reach the hub in order.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from redis.exceptions import RedisError, ResponseError

from gateway.fanout.hub import Hub
from gateway.fanout.live import KEEPALIVE_SECONDS, Unavailable
from gateway.fanout.resp import RespConnection
from gateway.tasks import Tasks
from wire import Keys

log = logging.getLogger(__name__)

Node = tuple[str, int]


class TopologyChanged(RedisError):
    """A slot moved or a primary changed: every shard is connected again."""


class ShardMetrics(Protocol):
    """Per-shard counts (gateway.metrics.GatewayMetrics provides it)."""

    def redis_reconnect(self) -> None: ...

    def shard_reconnect(self, node: str) -> None: ...


class ShardedReader:
    """Owns one sharded pub/sub connection per primary, the slot map, and confirmations."""

    def __init__(
        self,
        url: str,
        seeds: list[Node],
        keys: Keys,
        hub: Hub,
        on_lost: Callable[[], None],
        on_reconnected: Callable[[], Awaitable[None]],
        tasks: Tasks,
        metrics: ShardMetrics | None = None,
        confirm_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.seeds = seeds
        self.keys = keys
        self.hub = hub
        self.on_lost = on_lost
        self.on_reconnected = on_reconnected
        self.tasks = tasks
        self.metrics = metrics
        self.confirm_timeout = confirm_timeout
        self.connected = False
        self.conns: dict[Node, RespConnection] = {}
        self.subscribed: dict[Node, set[str]] = {}  # streams SSUBSCRIBEd per primary (metrics, tests)
        self._slots: list[tuple[int, int, Node]] = []
        self._confirm: dict[str, deque[asyncio.Future[None]]] = {}
        self._leaving: dict[str, int] = {}  # SUNSUBSCRIBEs sent and not yet answered, per stream
        self._stopping = False
        self._ever_connected = False
        self._epoch = 0

    @property
    def ready(self) -> bool:
        return self.connected and not any(self._confirm.values())

    def node_name(self, node: Node) -> str:
        return f"{node[0]}:{node[1]}"

    async def run(self) -> None:
        """Connect to every primary, read, and start over on any loss or topology change."""
        delay = 0.1
        try:
            while not self._stopping:
                try:
                    await self._connect()
                    delay = 0.1
                    await self._read_all()
                except (RedisError, OSError) as exc:
                    if self._stopping:
                        break
                    if self.connected or not self._ever_connected:
                        log.warning("redis cluster pub/sub: %s; connecting every shard again", exc)
                self._disconnect()
                if self._stopping:
                    break
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)
        finally:
            self._disconnect()

    async def _slot_map(self) -> list[tuple[int, int, Node]]:
        """CLUSTER SLOTS from the first seed or known primary that answers."""
        known = [node for _, _, node in self._slots]
        last: Exception = RedisError("no cluster node given")
        for node in dict.fromkeys([*known, *self.seeds]):
            try:
                conn = await RespConnection.open(self.url, "tailgate-gateway-slots", address=node)
            except (RedisError, OSError) as exc:
                last = exc
                continue
            try:
                conn.send("CLUSTER", "SLOTS")
                (reply,) = await asyncio.wait_for(conn.read(), self.confirm_timeout)
            except (RedisError, OSError, TimeoutError) as exc:
                last = exc
                continue
            finally:
                conn.close()
            if isinstance(reply, Exception):
                last = reply
                continue
            host = node[0]
            return [(int(r[0]), int(r[1]), (r[2][0].decode() or host, int(r[2][1]))) for r in reply]
        raise RedisError(f"no cluster node answered CLUSTER SLOTS: {last}")

    def owner(self, stream: str) -> Node:
        slot = self.keys.slot(stream)
        for start, end, node in self._slots:
            if start <= slot <= end:
                return node
        raise TopologyChanged(f"no primary owns slot {slot}")

    async def _connect(self) -> None:
        self._slots = await self._slot_map()
        self._epoch += 1
        for node in dict.fromkeys(node for _, _, node in self._slots):
            self.conns[node] = await RespConnection.open(self.url, "tailgate-gateway-pubsub", address=node)
            self.subscribed[node] = set()
        streams = self.hub.streams()
        for stream in streams:
            self._confirm.setdefault(stream, deque()).append(asyncio.get_running_loop().create_future())
            self._send_subscribe(stream)
        self.connected = True
        if self._ever_connected:
            log.info("redis cluster pub/sub: %d shards; resubscribing %d streams", len(self.conns), len(streams))
            if self.metrics is not None:
                self.metrics.redis_reconnect()
                for node in self.conns:
                    self.metrics.shard_reconnect(self.node_name(node))
            self.tasks.spawn(self._after_reconnect(self._epoch, streams), "resume-after-reshard")
        self._ever_connected = True

    def _send_subscribe(self, stream: str) -> None:
        node = self.owner(stream)
        self.conns[node].ssubscribe(self.keys.live(stream))
        self.subscribed[node].add(stream)

    async def _after_reconnect(self, epoch: int, streams: list[str]) -> None:
        results = await asyncio.gather(*(self._wait_confirmed(s) for s in streams), return_exceptions=True)
        if epoch != self._epoch or not self.connected:
            return  # lost again meanwhile: the next generation of connections resumes them
        if any(isinstance(r, BaseException) for r in results):
            log.warning("redis cluster did not confirm the resubscription; connecting again")
            for conn in self.conns.values():
                conn.close()
            return
        await self.on_reconnected()

    async def _read_all(self) -> None:
        """Read every shard's connection until one of them fails or says the topology changed."""
        readers = [asyncio.ensure_future(self._read(node, conn)) for node, conn in self.conns.items()]
        try:
            done, _ = await asyncio.wait(readers, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise TopologyChanged("a shard's reader ended")
        finally:
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    async def _read(self, node: Node, conn: RespConnection) -> None:
        pinged = False
        while not self._stopping:
            try:
                async with asyncio.timeout(KEEPALIVE_SECONDS):
                    replies = await conn.read()
            except TimeoutError:
                if pinged:
                    raise RedisError(f"no answer to keepalive PING from {self.node_name(node)}") from None
                conn.ping()
                pinged = True
                continue
            pinged = False
            burst: dict[str, list[bytes]] = {}
            try:
                for reply in replies:
                    self._handle(node, reply, burst)
            finally:
                # complete messages read before a topology change are handed on first
                for stream, messages in burst.items():
                    self.hub.dispatch(stream, messages)

    def _handle(self, node: Node, reply: Any, burst: dict[str, list[bytes]]) -> None:
        if isinstance(reply, ResponseError):
            # MOVED or ASK to an SSUBSCRIBE sent on a stale slot map, or CLUSTERDOWN
            raise TopologyChanged(f"{self.node_name(node)}: {reply}")
        if isinstance(reply, Exception):
            raise reply
        stream = self.keys.stream_of_channel(reply[1]) if isinstance(reply, list) and len(reply) > 1 else None
        if stream is None:
            return  # PONG
        kind = reply[0]
        if kind == b"smessage":
            burst.setdefault(stream, []).append(reply[2])
        elif kind == b"ssubscribe":
            waiting = self._confirm.get(stream)
            if waiting and not (fut := waiting.popleft()).done():
                fut.set_result(None)
            if not waiting:
                self._confirm.pop(stream, None)
        elif kind == b"sunsubscribe":
            if self._leaving.get(stream):
                self._leaving[stream] -= 1
            else:
                raise TopologyChanged(f"{self.node_name(node)} no longer serves {stream}: its slot moved")

    def _disconnect(self) -> None:
        if self.connected:
            self.on_lost()
        self.connected = False
        for waiting in self._confirm.values():
            for fut in waiting:
                if not fut.done():
                    fut.set_exception(Unavailable("redis connection lost"))
        self._confirm.clear()
        self._leaving.clear()
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()
        self.subscribed.clear()

    async def _wait_confirmed(self, stream: str) -> None:
        waiting = self._confirm.get(stream)
        if waiting:
            await asyncio.wait_for(asyncio.shield(waiting[-1]), self.confirm_timeout)

    async def subscribe(self, stream: str) -> None:
        """SSUBSCRIBE on the stream's owner and wait until it confirms."""
        if not self.connected:
            raise Unavailable("not connected to redis")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirm.setdefault(stream, deque()).append(fut)
        try:
            self._send_subscribe(stream)
            await asyncio.wait_for(asyncio.shield(fut), self.confirm_timeout)
        except (TimeoutError, RedisError, OSError) as exc:
            raise Unavailable(f"subscribe failed: {exc}") from None

    async def wait_subscribed(self, stream: str) -> None:
        if not self.connected:
            raise Unavailable("not connected to redis")
        try:
            await self._wait_confirmed(stream)
        except TimeoutError:
            raise Unavailable("subscribe not confirmed") from None

    async def unsubscribe(self, stream: str) -> None:
        """SUNSUBSCRIBE on the stream's owner (its last viewer left)."""
        if not self.connected:
            return
        for node, streams in self.subscribed.items():
            if stream in streams:
                streams.discard(stream)
                self._leaving[stream] = self._leaving.get(stream, 0) + 1
                self.conns[node].sunsubscribe(self.keys.live(stream))

    async def stop(self) -> None:
        self._stopping = True
        self._disconnect()
