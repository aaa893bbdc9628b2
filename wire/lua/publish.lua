-- publish: append each stream's lines to its history and publish them live, in one
-- atomic step (wire.Publisher; both the bridge and the tail agent call it).
-- A line is never live without being in history, and ids follow publish order. With a
-- checkpoint field (the bridge's topic:partition), lines whose offset is not newer than
-- the recorded one are skipped and the newest offset is recorded: effectively-once.
-- Each stream's history has an epoch (wire/epoch.py): kept while the history exists, a
-- new one made here, before the XADD that creates the history, whenever the history or
-- its epoch key is missing. Every live message carries it.
--
-- After the three fixed keys come (hist, live, epoch) key triples, one per stream, and
-- after the five fixed arguments six arguments per stream: stream name, n, lowest seq,
-- highest seq, seqs, and the n fragments joined with "\n" (a fragment is JSON text: it
-- never holds a raw newline). seqs is '' when the n seqs are lowest, lowest+1, ... (one
-- line per Kafka message), else runs of equal seqs as "seq:count,seq:count" (the lines of
-- one message share its offset). One argument per stream rather than two per line:
-- redis-py packs every argument in Python, which was the publishing thread's largest
-- cost. The seqs are read only when the lowest one is not newer than the checkpoint (a
-- redelivery). Returns {published, skipped}.
--
-- `after` chains the calls a bridge has sent and not yet seen answered for one
-- checkpoint (the next call goes out before the previous one's answer is back): it is the
-- highest seq of the previous such call, which recorded at least that offset if it
-- succeeded. A checkpoint below it means that call failed, and this one is refused with
-- an error before writing anything: publishing it would record a newer offset over the
-- failed call's lines, which a redelivery would then skip (a hole).
local checkpoints = KEYS[1]   -- hash Keys.offsets(group): topic:partition -> newest (unused without a field)
local seen = KEYS[2]          -- sorted set Keys.seen: stream -> last publish (epoch s)
local counts = KEYS[3]        -- hash Keys.counts: stream -> lines published
local maxlen = ARGV[1]        -- history length kept per stream (approximate trim)
local field = ARGV[2]         -- checkpoint field, or '' to publish without one
local now = ARGV[3]           -- epoch seconds, recorded in `seen`
local publish = ARGV[4]       -- PUBLISH (one node), or SPUBLISH (cluster: every key of the call in one slot)
local after = ARGV[5]         -- '' or the seq the checkpoint must have reached (the previous unanswered call's highest)
local FIRST_STREAM_KEY, KEYS_PER_STREAM, FIRST_STREAM_ARG, ARGS_PER_STREAM = 4, 3, 6, 6

local find, sub = string.find, string.sub

-- The epoch of `hist`, made anew when the history is about to be created (it does not
-- exist: first publish, FLUSHALL, a restart without persistence, eviction) or when its
-- epoch key is gone (evicted alone): a new epoch may announce a loss that did not
-- happen, never hide one that did. Redis's clock plus 16 random bits, in hex.
local function history_epoch(hist, key)
  local epoch = redis.call('GET', key)
  if epoch and redis.call('EXISTS', hist) == 1 then
    return epoch
  end
  local t = redis.call('TIME')
  epoch = string.format('%08x%05x%04x', tonumber(t[1]), tonumber(t[2]), math.random(0, 65535))
  redis.call('SET', key, epoch)
  return epoch
end

local last = -1
if field ~= '' then
  local v = redis.call('HGET', checkpoints, field)
  if v then last = tonumber(v) end
  if after ~= '' and last < tonumber(after) then
    return redis.error_reply('BEHIND checkpoint ' .. field .. ' is at ' .. last .. ', below ' .. after ..
      ': the call before this one failed; nothing published')
  end
end
local top = last
local published, skipped = 0, 0
local a = FIRST_STREAM_ARG
for k = FIRST_STREAM_KEY, #KEYS, KEYS_PER_STREAM do
  local hist, live, epochkey = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local stream = ARGV[a]
  local n = tonumber(ARGV[a + 1])
  local lo, hi = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local all = field == '' or lo > last
  local seqs, frags = ARGV[a + 4], ARGV[a + 5]
  a = a + ARGS_PER_STREAM
  -- The live message in pieces, joined once at the end: out[1] is its head (written last,
  -- when the ids and the count are known), then four pieces per line, so that no string
  -- is made per line: '{"id":"' .. id .. '",' .. fragment .. '}' for each, ',' between.
  local out, o, count, first, lastid, epoch = { '' }, 1, 0, nil, nil, nil
  local p, s, run, left, seq = 1, 1, 0, 0, 0
  for i = 1, n do
    local e = find(frags, '\n', p, true)
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
      -- before this stream's first XADD: that XADD may be the one creating the history
      if not first then epoch = history_epoch(hist, epochkey) end
      local id = redis.call('XADD', hist, '*', 'd', frag)
      first = first or id
      lastid = id
      out[o + 1], out[o + 2], out[o + 3], out[o + 4] = id, '",', frag, '},{"id":"'
      o = o + 4
      count = count + 1
    else
      skipped = skipped + 1
    end
  end
  if all and hi > top then top = hi end
  if count > 0 then
    redis.call('XTRIM', hist, 'MAXLEN', '~', maxlen)
    out[1] = first .. ' ' .. lastid .. ' ' .. count .. ' ' .. epoch .. '\n[{"id":"'
    out[o] = '}]'
    redis.call(publish, live, table.concat(out))
    redis.call('ZADD', seen, now, stream)
    redis.call('HINCRBY', counts, stream, count)
    published = published + count
  end
end
if field ~= '' and top > last then
  redis.call('HSET', checkpoints, field, top)
end
return {published, skipped}
