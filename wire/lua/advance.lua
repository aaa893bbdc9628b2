-- advance: raise a hash field to a number, never lower it (cluster mode: where a bridge
-- partition resumes, raised once every slot's publish call of a batch succeeded).
-- Returns the field's value after the call.
local hash = KEYS[1]              -- hash Keys.offsets(group)
local field = ARGV[1]             -- topic:partition
local value = tonumber(ARGV[2])   -- the newest offset the batch covered

local old = tonumber(redis.call('HGET', hash, field) or '-1')
if value > old then
  redis.call('HSET', hash, field, value)
  return value
end
return old
