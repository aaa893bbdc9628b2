"""The atomic "append to history + publish live" step, run once per batch.

Both the bridge and the tail agent publish through `Publisher`; nothing else writes the
history streams or the live channels. One Lua script call per batch guarantees a line is
never live without being in history and that ids follow publish order. When given a
checkpoint (the bridge's Kafka topic-partition), the same call skips lines whose offset
is not newer than the recorded one and records the new offset, which is what makes the
bridge effectively-once into Redis across crashes and redeliveries. The same call keeps
each stream's history epoch (`wire.epoch`) and puts it in every live message's header.

On Redis Cluster (``Keys(cluster=True)``, a `redis.RedisCluster` client) every key of
one call must be in one slot: a batch is split into one call per slot (a stream's keys
share its slot, wire/keys.py), sent in one pipeline that redis-py splits by node and
that follows MOVED/ASK. Each call is atomic on its own and keeps its checkpoint in its
slot (`Keys.offsets_in`), so a call that succeeded is skipped when the batch is sent
again after another one failed: effectively-once holds per slot. Where a partition
resumes (`Keys.offsets`) is raised only once every call of its batch succeeded.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

import redis

from wire.keys import Keys
from wire.lua import script

# The script: KEYS, ARGV and how a stream's lines are packed are described at its top.
PUBLISH_LUA = script("publish")
PUBLISH_SHA = hashlib.sha1(PUBLISH_LUA.encode()).hexdigest()
ADVANCE_LUA = script("advance")


@dataclass(slots=True)
class StreamBatch:
    """Encoded lines bound for one stream: (seq, fragment) pairs in order.

    `seq` is the Kafka offset a line came from when publishing with a checkpoint, and is
    ignored otherwise. Fragments come from `wire.envelope.encode_line` (or
    `encode_lines`): JSON text, so never a raw newline, which the publish step relies on
    to pass a stream's fragments as one argument (a fragment holding one is refused with
    ValueError before anything is sent).
    """

    stream: str
    lines: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where to record the newest published offset: hash `group` field `topic:partition`."""

    group: str
    topic: str
    partition: int

    @property
    def field(self) -> str:
        return f"{self.topic}:{self.partition}"


Call = tuple[Sequence[StreamBatch], Checkpoint | None]
# A checkpoint (on a cluster: with the slot whose copy of it a call keeps) and the highest seq
# of the newest call sent for it: the next call for it is refused unless that one recorded it.
Chain = dict[tuple[Checkpoint, int | None], int]
Link = tuple[tuple[Checkpoint, int | None], int]


class Publisher:
    """Runs the publish script for batches of lines; synchronous (bridge and agent are)."""

    def __init__(self, client: redis.Redis, keys: Keys, maxlen: int = 10_000) -> None:
        self.client = client
        self.keys = keys
        self.maxlen = maxlen
        self._script = client.register_script(PUBLISH_LUA)

    def _call_args(
        self, batches: Sequence[StreamBatch], checkpoint: Checkpoint | None, slot: int | None, after: int | None
    ) -> tuple[list[str], list[object], int | None]:
        """KEYS and ARGV of one script call, and its highest seq (None: no line in it)."""
        if slot is None:
            seen, counts, pub = self.keys.seen, self.keys.counts, "PUBLISH"
            offsets = self.keys.offsets(checkpoint.group) if checkpoint else seen
        else:
            seen, counts, pub = self.keys.seen_in(slot), self.keys.counts_in(slot), "SPUBLISH"
            offsets = self.keys.offsets_in(checkpoint.group, slot) if checkpoint else seen
        keys = [offsets, seen, counts]
        args: list[object] = [
            self.maxlen,
            checkpoint.field if checkpoint else "",
            f"{time.time():.3f}",
            pub,
            "" if after is None else after,
        ]
        top = None
        for batch in batches:
            lines = batch.lines
            if not lines:
                continue
            seqs, fragments = zip(*lines, strict=True)
            joined = b"\n".join(fragments)
            if joined.count(b"\n") != len(lines) - 1:
                raise ValueError(f"a fragment for {batch.stream} holds a raw newline; fragments come from encode_line")
            keys += [self.keys.hist(batch.stream), self.keys.live(batch.stream), self.keys.epoch(batch.stream)]
            if checkpoint is None:
                args += [batch.stream, len(lines), 0, 0, "", joined]
                top = 0
            else:
                lo, hi, runs = _seq_runs(seqs)
                args += [batch.stream, len(lines), lo, hi, runs, joined]
                top = hi if top is None else max(top, hi)
        return keys, args, top

    def _calls(self, calls: Sequence[Call], chain: Chain) -> list[tuple[list[str], list[object], Link | None]]:
        """The script calls for `calls` (on a cluster one per slot of each), leaving out
        empty ones; each call that has a checkpoint is chained to the one before it in
        `chain`, which is updated (see `Chain`)."""
        out: list[tuple[list[str], list[object], Link | None]] = []
        for batches, checkpoint in calls:
            if self.keys.cluster:
                by_slot: dict[int | None, list[StreamBatch]] = {}
                for batch in batches:
                    by_slot.setdefault(self.keys.slot(batch.stream), []).append(batch)
            else:
                by_slot = {None: list(batches)}
            for slot, group in by_slot.items():
                key = (checkpoint, slot) if checkpoint is not None else None
                keys, args, top = self._call_args(group, checkpoint, slot, chain.get(key) if key else None)
                if top is None:
                    continue
                if key is not None:
                    chain[key] = top
                out.append((keys, args, None if key is None else (key, top)))
        return out

    def publish(self, batches: Sequence[StreamBatch], checkpoint: Checkpoint | None = None) -> tuple[int, int]:
        """Publish one batch atomically (on a cluster: atomically per slot); returns
        (lines published, lines skipped as old)."""
        if self.keys.cluster:
            return self.publish_many([(batches, checkpoint)])
        keys, args, top = self._call_args(batches, checkpoint, None, None)
        if top is None:
            return 0, 0
        published, skipped = self._script(keys=keys, args=args)
        return int(published), int(skipped)

    def publish_many(self, calls: Sequence[Call]) -> tuple[int, int]:
        """Publish several batches (say one per partition) in one round trip.

        Each batch stays atomic on its own; totals are returned. Two batches of one
        partition are chained: the second is refused if the first failed.
        """
        resume: dict[Checkpoint, int] = {}  # cluster: where each partition resumes once all calls succeeded
        script_calls = self._calls(calls, {})
        for _, _, link in script_calls:
            if self.keys.cluster and link is not None:
                (checkpoint, _), top = link
                resume[checkpoint] = max(top, resume.get(checkpoint, top))
        if not script_calls:
            return 0, 0
        results = self._run([(keys, args) for keys, args, _ in script_calls])
        if resume:
            # After every slot's call: a crash before this leaves the partition to resume
            # earlier, and the slots' own checkpoints skip what they already hold.
            pipe = self.client.pipeline(transaction=False)
            for checkpoint, top in resume.items():
                pipe.execute_command("EVAL", ADVANCE_LUA, 1, self.keys.offsets(checkpoint.group), checkpoint.field, top)
            pipe.execute()
        return sum(int(r[0]) for r in results), sum(int(r[1]) for r in results)

    def _run(self, calls: list[tuple[list[str], list[object]]]) -> list[Any]:
        """EVALSHA every call in one pipeline, in order; raises the first error.

        By hash, not with the script's text: Redis hashes a 6 KB text on every EVAL (about
        10 us), paid per call, and on a cluster there is a call per slot. A node without
        the script (restarted, or a replica just promoted: EVAL's cache is not replicated)
        answers NOSCRIPT having run nothing; the script is loaded (on every primary) and
        the calls that failed, those refused behind them included, are sent again in order.
        """
        results = self._pipeline(calls)
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
            self.client.script_load(PUBLISH_LUA)
            again = [i for i, r in enumerate(results) if isinstance(r, Exception)]
            for i, result in zip(again, self._pipeline([calls[i] for i in again]), strict=True):
                results[i] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    def _pipeline(self, calls: list[tuple[list[str], list[object]]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.execute_command("EVALSHA", PUBLISH_SHA, len(keys), *keys, *args)
        return pipe.execute(raise_on_error=False)

    def reset_offset(self, checkpoint: Checkpoint, last: int) -> None:
        """Record `last` as the newest published offset of a partition, even if lower.

        For a partition whose log started over (topic deleted and recreated, or a broker
        that lost its log): without this the new log's offsets would be skipped as old.
        A negative `last` forgets the partition. On a cluster the checkpoint of every slot
        is set too (found with SCAN on every primary).
        """
        keys = [self.keys.offsets(checkpoint.group)]
        if self.keys.cluster:
            pattern = self.keys.per_slot_pattern(f"offsets:{checkpoint.group}")
            keys += [_s(k) for k in self.client.scan_iter(match=pattern, count=1000)]
        for key in keys:
            if last < 0:
                self.client.hdel(key, checkpoint.field)
            else:
                self.client.hset(key, checkpoint.field, last)

    def offsets(self, group: str) -> dict[str, int]:
        """The recorded newest published offset per ``topic:partition`` for a group."""
        raw = self.client.hgetall(self.keys.offsets(group))
        return {_s(k): int(v) for k, v in raw.items()}


class PublishPipe:
    """Publish steps (each one `publish_many`) sent one behind another on one connection,
    their answers read in order: Redis runs the next step while the bridge reads the
    previous one's answer and packs the one after. One node only (not a cluster), one
    thread; the connection is held from a step's send until no answer is outstanding, so
    other users of the client (reading positions) wait for that.

    A step's call for a checkpoint is chained to the unanswered call before it for the same
    checkpoint (the script's `after`): if that one failed, this one is refused before it
    writes anything, so a failure can never leave a hole under a newer offset.
    """

    def __init__(self, publisher: Publisher) -> None:
        if publisher.keys.cluster:
            raise ValueError("PublishPipe publishes to one node; a cluster's steps go through publish_many")
        self.publisher = publisher
        self.pool = publisher.client.connection_pool
        self.conn: redis.connection.AbstractConnection | None = None
        self.chain: Chain = {}  # only for calls not answered yet: an answered call needs no guard
        self.sent: deque[list[Link | None]] = deque()  # per unanswered step: its calls' links

    def send(self, calls: Sequence[Call]) -> None:
        """Pack and send one step; raises what redis-py raises (the connection then fails
        every step sent before it, see `drop`)."""
        script_calls = self.publisher._calls(calls, self.chain)
        if self.conn is None:
            self.conn = self.pool.get_connection()
        packed = self.conn.pack_commands(
            [("EVAL", PUBLISH_LUA, len(keys), *keys, *args) for keys, args, _ in script_calls]
        )
        self.sent.append([link for _, _, link in script_calls])
        self.conn.send_packed_command(packed)

    def receive(self) -> tuple[int, int]:
        """Read the answers of the oldest step sent: (lines published, skipped). Raises
        the first error among them once all are read (a refused or failed call)."""
        assert self.conn is not None
        links = self.sent.popleft()
        published = skipped = 0
        error: redis.RedisError | None = None
        for link in links:
            try:
                answer = self.conn.read_response()
            except redis.ResponseError as exc:  # the call failed; the connection is still in step
                error = error or exc
                continue
            published += int(answer[0])
            skipped += int(answer[1])
            if link is not None and self.chain.get(link[0]) == link[1]:
                del self.chain[link[0]]  # answered, and no newer call for it is out
        if not self.sent:
            self.pool.release(self.conn)
            self.conn = None
        if error is not None:
            raise error
        return published, skipped

    def drop(self) -> None:
        """After a failure: forget the steps still unanswered (their fate is unknown: the
        bridge reads its positions again) and close the connection if any was."""
        if self.conn is not None:
            if self.sent:
                self.conn.disconnect()
            self.pool.release(self.conn)
            self.conn = None
        self.sent.clear()
        self.chain.clear()


def _seq_runs(seqs: tuple[int, ...]) -> tuple[int, int, str]:
    """(lowest, highest, seqs) as the publish script reads them: '' for consecutive seqs,
    else runs of equal seqs ("7:20,8:3")."""
    first = seqs[0]
    if seqs == tuple(range(first, first + len(seqs))):
        return first, seqs[-1], ""
    runs = ",".join(f"{seq}:{sum(1 for _ in run)}" for seq, run in groupby(seqs))
    return min(seqs), max(seqs), runs


def _s(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
