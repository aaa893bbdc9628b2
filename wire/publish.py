"""The atomic "append to history + publish live" step, run once per batch.

Both the bridge and the tail agent publish through `Publisher`; nothing else writes the
history streams or the live channels. One Lua script call per batch guarantees a line is
never live without being in history and that ids follow publish order. When given a
checkpoint (the bridge's Kafka topic-partition), the same call skips lines whose offset
is not newer than the recorded one and records the new offset, which is what makes the
bridge effectively-once into Redis across crashes and redeliveries.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from wire.keys import Keys

# KEYS: [1] checkpoint hash, [2] seen zset, [3] line count hash, then (hist, live) pairs.
# ARGV: [1] maxlen, [2] checkpoint field or '', [3] now (epoch s), then per stream:
#       stream name, n, then n times (seq, fragment).
PUBLISH_LUA = """
local maxlen = ARGV[1]
local field = ARGV[2]
local now = ARGV[3]
local last = -1
if field ~= '' then
  local v = redis.call('HGET', KEYS[1], field)
  if v then last = tonumber(v) end
end
local top = last
local published, skipped = 0, 0
local a = 4
for k = 4, #KEYS, 2 do
  local hist, live = KEYS[k], KEYS[k + 1]
  local stream = ARGV[a]
  local n = tonumber(ARGV[a + 1])
  a = a + 2
  local out, first, lastid = {}, nil, nil
  for i = 1, n do
    local seq, frag = tonumber(ARGV[a]), ARGV[a + 1]
    a = a + 2
    if field == '' or seq > last then
      local id = redis.call('XADD', hist, '*', 'd', frag)
      first = first or id
      lastid = id
      out[#out + 1] = '{"id":"' .. id .. '",' .. frag .. '}'
      if seq > top then top = seq end
    else
      skipped = skipped + 1
    end
  end
  if #out > 0 then
    redis.call('XTRIM', hist, 'MAXLEN', '~', maxlen)
    redis.call('PUBLISH', live, first .. ' ' .. lastid .. ' ' .. #out .. '\\n[' .. table.concat(out, ',') .. ']')
    redis.call('ZADD', KEYS[2], now, stream)
    redis.call('HINCRBY', KEYS[3], stream, #out)
    published = published + #out
  end
end
if field ~= '' and top > last then
  redis.call('HSET', KEYS[1], field, top)
end
return {published, skipped}
"""


@dataclass(slots=True)
class StreamBatch:
    """Encoded lines bound for one stream: (seq, fragment) pairs in order.

    `seq` is the Kafka offset a line came from when publishing with a checkpoint, and is
    ignored otherwise. Fragments come from `wire.envelope.encode_line`.
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
        self, batches: Sequence[StreamBatch], checkpoint: Checkpoint | None
    ) -> tuple[list[str], list[object]]:
        keys = [
            self.keys.offsets(checkpoint.group) if checkpoint else self.keys.seen,
            self.keys.seen,
            self.keys.counts,
        ]
        args: list[object] = [self.maxlen, checkpoint.field if checkpoint else "", f"{time.time():.3f}"]
        for batch in batches:
            if not batch.lines:
                continue
            keys += [self.keys.hist(batch.stream), self.keys.live(batch.stream)]
            args += [batch.stream, len(batch.lines)]
            for seq, fragment in batch.lines:
                args += [seq, fragment]
        return keys, args

    def publish(self, batches: Sequence[StreamBatch], checkpoint: Checkpoint | None = None) -> tuple[int, int]:
        """Publish one batch atomically; returns (lines published, lines skipped as old)."""
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
        for batches, checkpoint in calls:
            keys, args = self._call_args(batches, checkpoint)
            if len(keys) > 3:
                self._script(keys=keys, args=args, client=pipe)
                queued += 1
        if not queued:
            return 0, 0
        results = pipe.execute()
        return sum(int(r[0]) for r in results), sum(int(r[1]) for r in results)

    def reset_offset(self, checkpoint: Checkpoint, last: int) -> None:
        """Record `last` as the newest published offset of a partition, even if lower.

        For a partition whose log started over (topic deleted and recreated, or a broker
        that lost its log): without this the new log's offsets would be skipped as old.
        A negative `last` forgets the partition.
        """
        key = self.keys.offsets(checkpoint.group)
        if last < 0:
            self.client.hdel(key, checkpoint.field)
        else:
            self.client.hset(key, checkpoint.field, last)

    def offsets(self, group: str) -> dict[str, int]:
        """The recorded newest published offset per ``topic:partition`` for a group."""
        raw = self.client.hgetall(self.keys.offsets(group))
        return {_s(k): int(v) for k, v in raw.items()}


def _s(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
