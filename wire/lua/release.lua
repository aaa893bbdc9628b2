-- release: delete a lock or heartbeat key only if it still holds our value, so an
-- owner whose key expired and was taken by another never deletes the other's.
-- Returns 1 when deleted, else 0.
local key = KEYS[1]     -- Keys.tail_lock(stream) or Keys.tail_alive(stream)
local owned = ARGV[1]   -- the value its owner wrote

if redis.call('GET', key) == owned then return redis.call('DEL', key) end
return 0
