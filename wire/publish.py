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
from itertools import groupby

import redis

from wire.keys import Keys

# KEYS: [1] checkpoint hash, [2] seen zset, [3] line count hash, then (hist, live) pairs.
# ARGV: [1] maxlen, [2] checkpoint field or '', [3] now (epoch s), then six per stream:
#       stream name, n, lowest seq, highest seq, seqs, and the n fragments joined with
#       "\n" (a fragment is JSON text: it never holds a raw newline). seqs is '' when the
#       n seqs are lowest, lowest+1, ... (one line per Kafka message), else runs of equal
#       seqs as "seq:count,seq:count" (the lines of one message share its offset).
# One argument per stream rather than two per line: redis-py packs every argument in
# Python, which was the publishing thread's largest cost. The seqs are read only when
# the lowest one is not newer than the checkpoint (a redelivery).
PUBLISH_LUA = """
local maxlen = ARGV[1]
local field = ARGV[2]
local now = ARGV[3]
local find, sub = string.find, string.sub
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
  local lo, hi = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local all = field == '' or lo > last
  local seqs, frags = ARGV[a + 4], ARGV[a + 5]
  a = a + 6
  local out, first, lastid = {}, nil, nil
  local p, s, run, left, seq = 1, 1, 0, 0, 0
  for i = 1, n do
    local e = find(frags, '\\n', p, true)
    local frag
    if e then
      frag = sub(frags, p, e - 1)
      p = e + 1
    else
      frag = sub(frags, p)
    end
    local new = all
    if not all then
      if seqs == '' then
        seq = lo + i - 1
      else
        if left == 0 then
          local c = find(seqs, ':', s, true)
          local ce = find(seqs, ',', c, true)
          run = tonumber(sub(seqs, s, c - 1))
          left = tonumber(sub(seqs, c + 1, (ce or 0) - 1))
          s = (ce or #seqs) + 1
        end
        seq = run
        left = left - 1
      end
      new = seq > last
      if new and seq > top then top = seq end
    end
    if new then
      local id = redis.call('XADD', hist, '*', 'd', frag)
      first = first or id
      lastid = id
      out[#out + 1] = '{"id":"' .. id .. '",' .. frag .. '}'
    else
      skipped = skipped + 1
    end
  end
  if all and hi > top then top = hi end
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
        self, batches: Sequence[StreamBatch], checkpoint: Checkpoint | None
    ) -> tuple[list[str], list[object]]:
        keys = [
            self.keys.offsets(checkpoint.group) if checkpoint else self.keys.seen,
            self.keys.seen,
            self.keys.counts,
        ]
        args: list[object] = [self.maxlen, checkpoint.field if checkpoint else "", f"{time.time():.3f}"]
        for batch in batches:
            lines = batch.lines
            if not lines:
                continue
            seqs, fragments = zip(*lines, strict=True)
            joined = b"\n".join(fragments)
            if joined.count(b"\n") != len(lines) - 1:
                raise ValueError(f"a fragment for {batch.stream} holds a raw newline; fragments come from encode_line")
            keys += [self.keys.hist(batch.stream), self.keys.live(batch.stream)]
            if checkpoint is None:
                args += [batch.stream, len(lines), 0, 0, "", joined]
            else:
                args += [batch.stream, len(lines), *_seq_runs(seqs), joined]
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
                # EVAL with the script's text, not EVALSHA: redis-py would ask Redis
                # whether the script is loaded (SCRIPT EXISTS, one more round trip) on
                # every pipeline, and EVAL cannot fail with NOSCRIPT part way through.
                pipe.execute_command("EVAL", PUBLISH_LUA, len(keys), *keys, *args)
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
