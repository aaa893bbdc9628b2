"""The file-tail lifecycle shared by gateways and tail agents, in Redis.

* ``Keys.tail_wanted(stream)``: a sorted set, one member per gateway that has viewers of
  the stream, scored with the lease's expiry in Redis server time (milliseconds). A
  gateway renews its member while it has viewers and removes it when the last one
  leaves; a crashed gateway's member simply expires. Using the server's clock (TIME
  inside the script) keeps hosts with skewed clocks honest.
* ``Keys.tail_alive(stream)``: the agent's heartbeat, a short-lived string holding
  `alive_value`; it disappears within its TTL when the agent dies.
* ``Keys.tail_lock(stream)``: held (SET NX PX) by the one gateway asking Salt to start an
  agent, so a stream nobody tails is started once, not once per gateway.

The agent exits once the wanted set has been empty for its grace period.
"""

from __future__ import annotations

import json
import os
import socket
import time

# KEYS[1] wanted zset; ARGV[1] member (gateway id), ARGV[2] lease ms. Returns members left.
WANT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return redis.call('ZCARD', KEYS[1])
"""

# KEYS[1] wanted zset; ARGV[1] member. Returns members left.
UNWANT_LUA = """
redis.call('ZREM', KEYS[1], ARGV[1])
local left = redis.call('ZCARD', KEYS[1])
if left == 0 then redis.call('DEL', KEYS[1]) end
return left
"""

# KEYS[1] wanted zset. Returns how many gateways still hold an unexpired lease.
WANTED_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""

# KEYS[1] a lock or heartbeat key; ARGV[1] the value its owner wrote. Deletes only our own.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def alive_value(pid: int | None = None, host: str | None = None) -> str:
    """The heartbeat value an agent writes: who it is and since when (JSON)."""
    return json.dumps(
        {"pid": pid or os.getpid(), "host": host or socket.gethostname(), "since": round(time.time(), 3)},
        separators=(",", ":"),
    )


def owner_id(role: str) -> str:
    """A unique id for one process (a gateway's lease member, a lock's owner)."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
