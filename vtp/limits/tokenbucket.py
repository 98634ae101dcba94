"""Token buckets: what a sender may send, per connection and per user.

A WebSocket handler takes one token per message from its connection's bucket and from
its user's bucket (shared by that user's connections in this process); when either is
empty the sender is flooding and its own socket is closed. Receivers never pay for it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    updated: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self.updated = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens if there are that many."""
        self._refill()
        if self.tokens < n:
            return False
        self.tokens -= n
        return True

    def full(self) -> bool:
        self._refill()
        return self.tokens >= self.burst


class UserBuckets:
    """One bucket per user, shared by that user's connections in this process.

    A full bucket is the same as a new one, so full buckets are forgotten when the map
    grows: it stays as large as the number of users who sent something lately."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[uuid.UUID, TokenBucket] = {}
        self._prune_at = 64

    def get(self, user_id: uuid.UUID) -> TokenBucket:
        bucket = self._buckets.get(user_id)
        if bucket is None:
            if len(self._buckets) >= self._prune_at:
                self._buckets = {u: b for u, b in self._buckets.items() if not b.full()}
                self._prune_at = max(64, 2 * len(self._buckets))
            bucket = self._buckets[user_id] = TokenBucket(self.rate, self.burst, self.clock)
        return bucket

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True, slots=True)
class SendLimit:
    """The limit one connection sends under: its own bucket and its user's."""

    connection: TokenBucket
    users: UserBuckets
    user_id: uuid.UUID

    def allow(self) -> bool:
        """One message: False when the connection or the user is over its rate."""
        # both are charged, so a user's many sockets cannot each spend a full burst (the
        # user's bucket is looked up each time: a full one may have been forgotten)
        ok_conn = self.connection.take()
        ok_user = self.users.get(self.user_id).take()
        return ok_conn and ok_user


class SendLimits:
    """Hands out :class:`SendLimit` objects for one kind of socket; the user's rate and
    burst are twice the connection's (a user may have a second tab open)."""

    USER_FACTOR = 2.0

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.users = UserBuckets(rate * self.USER_FACTOR, burst * self.USER_FACTOR, clock)

    def for_connection(self, user_id: uuid.UUID) -> SendLimit:
        return SendLimit(TokenBucket(self.rate, self.burst, self.clock), self.users, user_id)
