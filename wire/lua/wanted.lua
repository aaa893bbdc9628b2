-- wanted: how many gateways still hold an unexpired lease on a file stream (asked by
-- the tail agent with each heartbeat; it exits once this stays 0 for its grace period).
-- Expired leases are dropped on the way, by Redis server time.
local wanted = KEYS[1]   -- sorted set Keys.tail_wanted(stream)

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', wanted, '-inf', now)
return redis.call('ZCARD', wanted)
