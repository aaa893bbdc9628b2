-- want: a gateway takes or renews its lease on a file stream (wire.lifecycle).
-- The lease expires at Redis server time (TIME) + ttl, so hosts with skewed clocks
-- agree; expired leases are dropped on the way. Returns the members left.
local wanted = KEYS[1]          -- sorted set Keys.tail_wanted(stream): member -> expiry (ms)
local member = ARGV[1]          -- the gateway's owner id
local ttl = tonumber(ARGV[2])   -- lease length in milliseconds

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', wanted, now + ttl, member)
redis.call('ZREMRANGEBYSCORE', wanted, '-inf', now)
if redis.call('PTTL', wanted) < ttl then redis.call('PEXPIRE', wanted, ttl) end
return redis.call('ZCARD', wanted)
