-- unwant: a gateway drops its lease on a file stream (its last viewer left).
-- Deletes the set once empty. Returns the members left.
local wanted = KEYS[1]   -- sorted set Keys.tail_wanted(stream)
local member = ARGV[1]   -- the gateway's owner id

redis.call('ZREM', wanted, member)
local left = redis.call('ZCARD', wanted)
if left == 0 then redis.call('DEL', wanted) end
return left
