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

from wire.lua import script

# The scripts (KEYS and ARGV are named at the top of each file in wire/lua/).
WANT_LUA = script("want")  # take or renew a gateway's lease; returns the members left
UNWANT_LUA = script("unwant")  # drop a gateway's lease; returns the members left
WANTED_LUA = script("wanted")  # how many gateways still hold an unexpired lease
RELEASE_LUA = script("release")  # delete a lock or heartbeat key only if it holds our value


def alive_value(pid: int | None = None, host: str | None = None) -> str:
    """The heartbeat value an agent writes: who it is and since when (JSON)."""
    return json.dumps(
        {"pid": pid or os.getpid(), "host": host or socket.gethostname(), "since": round(time.time(), 3)},
        separators=(",", ":"),
    )


def owner_id(role: str) -> str:
    """A unique id for one process (a gateway's lease member, a lock's owner)."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
