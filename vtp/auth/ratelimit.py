"""Fixed-window counters in Redis (login attempts per address, registrations per address,
chat messages per user) and exponential backoff (failed logins per account + address)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_s: int


class RateLimiter:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _key(self, subject: str) -> str:
        return f"vtp:ratelimit:{self._prefix}:{subject}"

    async def hit(self, subject: str, *, limit: int, window_s: int) -> Verdict:
        """Count one attempt; refuse once more than `limit` fall in the window."""
        key = self._key(subject)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window_s, nx=True)
            pipe.ttl(key)
            count, _, ttl = await pipe.execute()
        if int(count) > limit:
            return Verdict(False, max(1, int(ttl)))
        return Verdict(True, 0)

    async def peek(self, subject: str, *, limit: int) -> Verdict:
        """Is the subject over the limit, without counting an attempt?"""
        key = self._key(subject)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.ttl(key)
            count, ttl = await pipe.execute()
        if count is not None and int(count) >= limit:
            return Verdict(False, max(1, int(ttl)))
        return Verdict(True, 0)

    async def reset(self, subject: str) -> None:
        await self._redis.delete(self._key(subject))


_FAIL = """
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local free = tonumber(ARGV[1])
local delay = 0
if failures >= free then
  delay = math.min(tonumber(ARGV[3]), tonumber(ARGV[2]) * 2 ^ (failures - free))
  redis.call('HSET', KEYS[1], 'until', tonumber(ARGV[5]) + delay)
end
redis.call('EXPIRE', KEYS[1], math.ceil(math.max(tonumber(ARGV[4]), delay)))
return failures
"""


class Backoff:
    """Exponential delay after failures, per subject (login: account + address).

    The first ``free`` failures in ``window_s`` cost nothing; each further one doubles the
    time the subject must wait (``base_s``, 2 x ``base_s``, ... up to ``max_s``). A
    subject is an account *at one address*: an attacker guessing from many addresses is
    slowed at each of them (and by the per-address limit), while the owner, from their
    own address, is not locked out of their account."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._fail = redis.register_script(_FAIL)

    def _key(self, subject: str) -> str:
        return f"vtp:backoff:{self._prefix}:{subject}"

    async def check(self, subject: str) -> Verdict:
        """May the subject try now?"""
        until = await self._redis.hget(self._key(subject), "until")
        wait = float(until) - time.time() if until is not None else 0.0
        if wait > 0:
            return Verdict(False, max(1, math.ceil(wait)))
        return Verdict(True, 0)

    async def failed(
        self, subject: str, *, free: int, base_s: float, max_s: float, window_s: int
    ) -> None:
        await self._fail(
            keys=[self._key(subject)], args=[free, base_s, max_s, window_s, time.time()]
        )

    async def reset(self, subject: str) -> None:
        await self._redis.delete(self._key(subject))
