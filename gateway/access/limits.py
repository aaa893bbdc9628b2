"""Abuse limits that are not about one frame's content: rates, connection counts, file streams.

`ControlLimiter` is per connection (`gateway.control_rate` per second sustained,
`gateway.control_burst` at once, token buckets). `ConnectionCounter` is per gateway process: open
WebSockets per authenticated user (`auth.max_connections_per_user`) and per client
address (`auth.max_connections_per_address`); 0 means no limit. `KeyedRate` is a token
bucket per user (file listings: `salt.list_files_rate`). `FileStreamQuota` bounds the
distinct file streams, each a process on a server, one user has on this gateway
(`salt.max_streams_per_user`). All are driven by the event loop's single thread, so
they need no locks.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Protocol
from weakref import WeakKeyDictionary

from wire.codes import ErrorCode, ProtocolError

# A file stream a user opened counts against their quota this long even once nobody
# watches it: its agent runs on for its grace period (the logtail formula's default
# grace_period), so closing and opening paths cannot start agents faster than the quota.
RECENT_OPEN_SECONDS = 30.0


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `take` spends one if there is one."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = max(0.0, rate)
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._last = time.monotonic()

    def take(self) -> bool:
        self._tokens, self._last = self._available(), time.monotonic()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def _available(self) -> float:
        return min(self.burst, self._tokens + (time.monotonic() - self._last) * self.rate)

    def wait(self) -> float:
        """Seconds until `take` can succeed (0 if it can now); spends nothing."""
        missing = 1.0 - self._available()
        if missing <= 0:
            return 0.0
        return missing / self.rate if self.rate > 0 else float("inf")

    @property
    def full(self) -> bool:
        """Refilled to its burst: forgetting it changes nothing."""
        return self._available() >= self.burst


class KeyedRate:
    """A `TokenBucket` per key (a user), made on first use; full ones are forgotten."""

    PRUNE_OVER = 1024

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.buckets: dict[str, TokenBucket] = {}

    def take(self, key: str) -> float:
        """0 when `key` may go now (a token is spent), else the seconds until it may."""
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.PRUNE_OVER:
                self.buckets = {k: b for k, b in self.buckets.items() if not b.full}
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst)
        return 0.0 if bucket.take() else bucket.wait()


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


class Watcher(Protocol):
    """A viewer whose subscriptions count (a fanout Session)."""

    @property
    def subs(self) -> Mapping[str, object]: ...


class FileStreamQuota:
    """Distinct file streams per user on this gateway: those the user's connections watch,
    plus those the user opened in the last `RECENT_OPEN_SECONDS`. Watched streams are read
    from the connections themselves, so nothing needs releasing when one ends."""

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self.owners: WeakKeyDictionary[Watcher, str] = WeakKeyDictionary()
        self.opened: dict[str, dict[str, float]] = {}  # user -> stream -> when last opened

    def admit(self, user: str, watcher: Watcher, stream: str) -> None:
        """Count `stream` as opened by `user` through `watcher`, or raise `ProtocolError`
        (`too_large`) when that would make more than `per_user` streams."""
        self.owners[watcher] = user
        now = time.monotonic()
        for name, opened in list(self.opened.items()):
            recent = {s: at for s, at in opened.items() if now - at < RECENT_OPEN_SECONDS}
            if recent:
                self.opened[name] = recent
            else:
                del self.opened[name]
        counted = self.watched(user) | self.opened.get(user, {}).keys()
        if self.per_user > 0 and stream not in counted and len(counted) >= self.per_user:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"at most {self.per_user} file streams per user on this gateway (counting those opened in the "
                f"last {RECENT_OPEN_SECONDS:.0f}s): close one first",
                stream,
                "file_streams_per_user",
            )
        self.opened.setdefault(user, {})[stream] = now

    def watched(self, user: str) -> set[str]:
        """The file streams `user`'s connections watch now."""
        return {s for w, u in list(self.owners.items()) if u == user for s in w.subs if s.startswith("file:")}

    def user_of(self, watcher: Watcher) -> str | None:
        """The user a connection opened file streams for (None: it opened none, or authentication is off)."""
        return self.owners.get(watcher)
