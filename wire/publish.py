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

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby

import redis

from wire.keys import Keys
from wire.lua import script

# The script: KEYS, ARGV and how a stream's lines are packed are described at its top.
PUBLISH_LUA = script("publish")
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


class Publisher:
    """Runs the publish script for batches of lines; synchronous (bridge and agent are)."""

    def __init__(self, client: redis.Redis, keys: Keys, maxlen: int = 10_000) -> None:
        self.client = client
        self.keys = keys
        self.maxlen = maxlen
        self._script = client.register_script(PUBLISH_LUA)

    def _call_args(
        self, batches: Sequence[StreamBatch], checkpoint: Checkpoint | None, slot: int | None = None
    ) -> tuple[list[str], list[object]]:
        if slot is None:
            seen, counts, pub = self.keys.seen, self.keys.counts, "PUBLISH"
            offsets = self.keys.offsets(checkpoint.group) if checkpoint else seen
        else:
            seen, counts, pub = self.keys.seen_in(slot), self.keys.counts_in(slot), "SPUBLISH"
            offsets = self.keys.offsets_in(checkpoint.group, slot) if checkpoint else seen
        keys = [offsets, seen, counts]
        args: list[object] = [self.maxlen, checkpoint.field if checkpoint else "", f"{time.time():.3f}", pub]
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
            else:
                args += [batch.stream, len(lines), *_seq_runs(seqs), joined]
        return keys, args

    def _calls(
        self, batches: Sequence[StreamBatch], checkpoint: Checkpoint | None
    ) -> list[tuple[list[str], list[object]]]:
        """The script calls for one batch: one, or on a cluster one per slot."""
        if not self.keys.cluster:
            return [self._call_args(batches, checkpoint)]
        by_slot: dict[int, list[StreamBatch]] = {}
        for batch in batches:
            by_slot.setdefault(self.keys.slot(batch.stream), []).append(batch)
        return [self._call_args(group, checkpoint, slot) for slot, group in by_slot.items()]

    def publish(self, batches: Sequence[StreamBatch], checkpoint: Checkpoint | None = None) -> tuple[int, int]:
        """Publish one batch atomically (on a cluster: atomically per slot); returns
        (lines published, lines skipped as old)."""
        if self.keys.cluster:
            return self.publish_many([(batches, checkpoint)])
        keys, args = self._call_args(batches, checkpoint)
        if len(keys) == 3:
            return 0, 0
        published, skipped = self._script(keys=keys, args=args)
        return int(published), int(skipped)

    def publish_many(self, calls: Sequence[tuple[Sequence[StreamBatch], Checkpoint | None]]) -> tuple[int, int]:
        """Publish several independent batches (say one per partition) in one round trip.

        Each batch stays atomic on its own; totals are returned.
        """
        pipe = self.client.pipeline(transaction=False)
        queued = 0
        resume: dict[Checkpoint, int] = {}  # cluster: where each partition resumes once all calls succeeded
        for batches, checkpoint in calls:
            for keys, args in self._calls(batches, checkpoint):
                if len(keys) > 3:
                    # EVAL with the script's text, not EVALSHA: redis-py would ask Redis
                    # whether the script is loaded (SCRIPT EXISTS, one more round trip) on
                    # every pipeline, and EVAL cannot fail with NOSCRIPT part way through.
                    pipe.execute_command("EVAL", PUBLISH_LUA, len(keys), *keys, *args)
                    queued += 1
            if self.keys.cluster and checkpoint is not None:
                top = max((seq for b in batches for seq, _ in b.lines), default=None)
                if top is not None:
                    resume[checkpoint] = max(top, resume.get(checkpoint, top))
        if not queued:
            return 0, 0
        results = pipe.execute()
        if resume:
            # After every slot's call: a crash before this leaves the partition to resume
            # earlier, and the slots' own checkpoints skip what they already hold.
            pipe = self.client.pipeline(transaction=False)
            for checkpoint, top in resume.items():
                pipe.execute_command("EVAL", ADVANCE_LUA, 1, self.keys.offsets(checkpoint.group), checkpoint.field, top)
            pipe.execute()
        return sum(int(r[0]) for r in results), sum(int(r[1]) for r in results)

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
