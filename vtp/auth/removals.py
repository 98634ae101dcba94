"""Whom a teacher removed from a live session, kept in Redis.

Every VTP process sharing the Redis (and one restarted mid-class) refuses a removed
user both the classroom channel and the session's SFU room until the session ends (the
SFU's room access refuses everyone once it is no longer live, so the entries only need
to outlive the session: they expire after :data:`KEEP_S`)."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

KEEP_S = 2 * 24 * 3600


def _key(session_id: uuid.UUID) -> str:
    return f"vtp:live:removed:{session_id}"


async def mark(redis: Redis, session_id: uuid.UUID, user_id: uuid.UUID, reason: str) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(_key(session_id), str(user_id), reason.encode())
        pipe.expire(_key(session_id), KEEP_S)
        await pipe.execute()


async def reason(redis: Redis, session_id: uuid.UUID, user_id: uuid.UUID) -> str | None:
    """Why the user was removed, or None if they were not."""
    value = await redis.hget(_key(session_id), str(user_id))
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
