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

Invariants: those of fanout/reader.py (the loop, confirmations and resume it shares with
`LiveReader`); each connection's reads reach the hub in order.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any, Protocol

from redis.exceptions import RedisError, ResponseError

from gateway.fanout.reader import Subscriber
from gateway.fanout.resp import RespConnection

log = logging.getLogger(__name__)

Node = tuple[str, int]


class TopologyChanged(RedisError):
    """A slot moved or a primary changed: every shard is connected again."""


class ShardMetrics(Protocol):
    """Per-shard counts (gateway.metrics.GatewayMetrics provides it)."""

    def redis_reconnect(self) -> None: ...

    def shard_reconnect(self, node: str) -> None: ...


class ShardedReader(Subscriber):
    """Owns one sharded pub/sub connection per primary, and the slot map."""

    what = "redis cluster pub/sub"

    metrics: ShardMetrics | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The arguments of `Subscriber`, with `ShardMetrics` as its metrics."""
        super().__init__(*args, **kwargs)
        self.seeds: list[Node] = self.redis.target.cluster_addresses()
        self.conns: dict[Node, RespConnection] = {}
        self.subscribed: dict[Node, set[str]] = {}  # streams SSUBSCRIBEd per primary (metrics, tests)
        self._slots: list[tuple[int, int, Node]] = []
        self._leaving: dict[str, int] = {}  # SUNSUBSCRIBEs sent and not yet answered, per stream

    def node_name(self, node: Node) -> str:
        return f"{node[0]}:{node[1]}"

    async def _slot_map(self) -> list[tuple[int, int, Node]]:
        """CLUSTER SLOTS from the first seed or known primary that answers."""
        known = [node for _, _, node in self._slots]
        last: Exception = RedisError("no cluster node given")
        for node in dict.fromkeys([*known, *self.seeds]):
            try:
                conn = await RespConnection.open(self.redis.node_at(node), "tailgate-gateway-slots")
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

    async def _open(self) -> None:
        self._slots = await self._slot_map()
        for node in dict.fromkeys(node for _, _, node in self._slots):
            self.conns[node] = await RespConnection.open(self.redis.node_at(node), "tailgate-gateway-pubsub")
            self.subscribed[node] = set()

    def _subscribe_all(self, streams: list[str]) -> None:
        for stream in streams:
            self._send_subscribe(stream)

    def _send_subscribe(self, stream: str) -> None:
        node = self.owner(stream)
        self.conns[node].ssubscribe(self.keys.live(stream))
        self.subscribed[node].add(stream)

    def _reconnected(self, streams: int) -> None:
        log.info("redis cluster pub/sub: %d shards; resubscribing %d streams", len(self.conns), streams)
        if self.metrics is not None:
            for node in self.conns:
                self.metrics.shard_reconnect(self.node_name(node))

    async def _read(self) -> None:
        """Read every shard's connection until one of them fails or says the topology changed."""
        readers = [
            asyncio.ensure_future(self._read_from(conn, partial(self._handle, node), self.node_name(node)))
            for node, conn in self.conns.items()
        ]
        if not readers:
            raise TopologyChanged("no primary owns a slot")
        try:
            done, _ = await asyncio.wait(readers, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise TopologyChanged("a shard's reader ended")
        finally:
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

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
            self._confirmed(stream)
        elif kind == b"sunsubscribe":
            if self._leaving.get(stream):
                self._leaving[stream] -= 1
            else:
                raise TopologyChanged(f"{self.node_name(node)} no longer serves {stream}: its slot moved")

    def _close(self) -> None:
        self._leaving.clear()
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()
        self.subscribed.clear()

    async def unsubscribe(self, stream: str) -> None:
        """SUNSUBSCRIBE on the stream's owner (its last viewer left)."""
        if not self.connected:
            return
        for node, streams in self.subscribed.items():
            if stream in streams:
                streams.discard(stream)
                self._leaving[stream] = self._leaving.get(stream, 0) + 1
                self.conns[node].sunsubscribe(self.keys.live(stream))
