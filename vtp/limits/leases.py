"""Counted leases in Redis: a cap on what a user holds at once (open WebSockets) that
holds across every VTP process sharing the Redis.

Each lease is a member of a sorted set per subject, scored by when it expires. Taking one
drops the expired members and adds the new one only if fewer than the limit remain (one
Lua script: no race between processes). The process holding leases pushes their expiry
forward every ``ttl_s / 3``; a process that crashes stops doing so and its leases lapse
within ``ttl_s``, so counts never leak.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

from redis.asyncio import Redis

logger = logging.getLogger(__name__)

_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class Leases:
    def __init__(self, redis: Redis, prefix: str, ttl_s: float = 60.0) -> None:
        self._redis = redis
        self._prefix = prefix
        self.ttl_s = ttl_s
        self._held: dict[str, str] = {}  # lease id -> its sorted set's key
        self._take = redis.register_script(_TAKE)

    def _key(self, subject: str) -> str:
        return f"vtp:leases:{self._prefix}:{subject}"

    async def take(self, subject: str, limit: int) -> str | None:
        """A lease id, or None when ``subject`` holds ``limit`` leases already."""
        key = self._key(subject)
        lease = uuid.uuid4().hex
        now = time.time()
        self._held[lease] = key  # refreshed from now on, even while the script runs
        try:
            ok = await self._take(
                keys=[key], args=[now, now + self.ttl_s, limit, lease, int(self.ttl_s) + 1]
            )
        except BaseException:
            self._held.pop(lease, None)
            raise
        if not ok:
            self._held.pop(lease, None)
            return None
        return lease

    async def give_back(self, lease: str) -> None:
        key = self._held.pop(lease, None)
        if key is not None:
            await self._redis.zrem(key, lease)

    async def count(self, subject: str) -> int:
        key = self._key(subject)
        await self._redis.zremrangebyscore(key, "-inf", time.time())
        return int(await self._redis.zcard(key))

    async def refresh(self) -> None:
        """Push the expiry of every lease this process holds forward."""
        if not self._held:
            return
        expiry = time.time() + self.ttl_s
        async with self._redis.pipeline(transaction=False) as pipe:
            for lease, key in list(self._held.items()):
                pipe.zadd(key, {lease: expiry}, xx=True)
                pipe.expire(key, int(self.ttl_s) + 1)
            await pipe.execute()

    async def keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                await self.refresh()
            except Exception:  # Redis away for a moment: the next round catches up
                logger.warning("refreshing %d leases failed", len(self._held), exc_info=True)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Leases]:
        task = asyncio.create_task(self.keep_fresh())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
