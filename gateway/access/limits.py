"""Abuse limits that are not about one frame's content: control-message rate and connection counts.

`ControlLimiter` is per connection (`gateway.control_rate` per second sustained,
`gateway.control_burst` at once, token buckets). `ConnectionCounter` is per gateway process: open
WebSockets per authenticated user (`auth.max_connections_per_user`) and per client
address (`auth.max_connections_per_address`); 0 means no limit. Both are pure and
driven by the event loop's single thread, so they need no locks.
"""

from __future__ import annotations

import time
from collections import Counter


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `take` spends one if there is one."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = max(0.0, rate)
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._last = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class ControlLimiter:
    """A connection's control-message limit. Over the rate a message is refused
    (`rate_limited`); a client that goes on sending at more than twice the rate, so that
    its refusals use up a second bucket of the same size, is to be disconnected."""

    OK, LIMITED, ABUSIVE = "ok", "limited", "abusive"

    def __init__(self, rate: float, burst: int) -> None:
        self.allowed = TokenBucket(rate, burst)
        self.refusals = TokenBucket(rate, burst)

    def admit(self) -> str:
        if self.allowed.take():
            return self.OK
        return self.LIMITED if self.refusals.take() else self.ABUSIVE


class ConnectionCounter:
    """Open connections per user and per address in this process."""

    def __init__(self, per_user: int, per_address: int) -> None:
        self.per_user = per_user
        self.per_address = per_address
        self.users: Counter[str] = Counter()
        self.addresses: Counter[str] = Counter()

    def acquire(self, user: str, address: str) -> str | None:
        """Count a new connection, or return which limit refuses it (`per_user`/`per_address`)."""
        if self.per_user > 0 and self.users[user] >= self.per_user:
            return "per_user"
        if self.per_address > 0 and self.addresses[address] >= self.per_address:
            return "per_address"
        self.users[user] += 1
        self.addresses[address] += 1
        return None

    def release(self, user: str, address: str) -> None:
        """Forget a connection `acquire` counted."""
        for counter, key in ((self.users, user), (self.addresses, address)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]
