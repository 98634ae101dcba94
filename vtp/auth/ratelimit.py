"""Fixed-window counters in Redis, for login attempts per account and per address."""

from __future__ import annotations

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
