"""A Redis pub/sub channel between the nodes of a cluster: JSON messages that every other
process hears (a process does not hear its own: it acts on them locally when it sends).

Pub/sub is at-most-once: a message published while a process is reconnecting to Redis is
lost to it. Use it for what is live only (a chat message on screens that also load the
history), never for what must be kept.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from vtp.cluster.subscription import Subscription

log = logging.getLogger(__name__)


class Topic:
    def __init__(self, redis: Redis, name: str, receive: Callable[[dict[str, Any]], None]):
        db = redis.connection_pool.connection_kwargs.get("db", 0)
        # Pub/sub channels are server-wide, not per database: installations sharing a
        # Redis server on different databases must not hear each other.
        self.channel = f"vtp:{name}:{db}"
        self.origin = secrets.token_hex(8)
        self._redis = redis
        self._receive = receive
        self._subscription = Subscription(redis, self.channel, self._received)

    async def start(self) -> None:
        await self._subscription.start()

    async def close(self) -> None:
        await self._subscription.close()

    async def publish(self, data: dict[str, Any]) -> None:
        """Tell the other processes; a Redis failure is logged, not raised (the sender
        has already acted locally)."""
        try:
            await self._redis.publish(self.channel, json.dumps([self.origin, data]))
        except (RedisError, OSError):
            log.exception("not published on %s", self.channel)

    def _received(self, raw: Any) -> None:
        try:
            origin, data = json.loads(raw)
        except (ValueError, TypeError):
            log.warning("ignored a malformed message on %s", self.channel)
            return
        if origin != self.origin and isinstance(data, dict):
            self._receive(data)
