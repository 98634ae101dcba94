"""A Redis pub/sub channel between the nodes of a cluster: JSON messages that every other
process hears (a process does not hear its own: it acts on them locally when it sends).

Pub/sub is at-most-once: a message published while a process is reconnecting to Redis is
lost to it. Use it for what is live only (a chat message on screens that also load the
history), never for what must be kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

RECONNECT_S = (0.2, 0.5, 1.0, 2.0, 5.0)
START_WAIT_S = 5.0  # the app starts (and reports Redis down) rather than wait for it


class Topic:
    def __init__(self, redis: Redis, name: str, receive: Callable[[dict[str, Any]], None]):
        db = redis.connection_pool.connection_kwargs.get("db", 0)
        # Pub/sub channels are server-wide, not per database: installations sharing a
        # Redis server on different databases must not hear each other.
        self.channel = f"vtp:{name}:{db}"
        self.origin = secrets.token_hex(8)
        self._redis = redis
        self._receive = receive
        self._listener: asyncio.Task[None] | None = None
        self._tried = asyncio.Event()

    async def start(self) -> None:
        """Subscribe (waiting for the first attempt: nothing published once the app serves
        is missed while Redis is up)."""
        self._listener = asyncio.create_task(self._listen(), name=f"vtp-topic-{self.channel}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tried.wait(), START_WAIT_S)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None

    async def publish(self, data: dict[str, Any]) -> None:
        """Tell the other processes; a Redis failure is logged, not raised (the sender
        has already acted locally)."""
        try:
            await self._redis.publish(self.channel, json.dumps([self.origin, data]))
        except (RedisError, OSError):
            log.exception("not published on %s", self.channel)

    async def _listen(self) -> None:
        attempt = 0
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._tried.set()
                attempt = 0
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._received(message.get("data"))
            except (RedisError, OSError) as exc:
                self._tried.set()
                delay = RECONNECT_S[min(attempt, len(RECONNECT_S) - 1)]
                attempt += 1
                log.warning("%s lost Redis (%s); again in %.1f s", self.channel, exc, delay)
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _received(self, raw: Any) -> None:
        try:
            origin, data = json.loads(raw)
        except (ValueError, TypeError):
            log.warning("ignored a malformed message on %s", self.channel)
            return
        if origin == self.origin or not isinstance(data, dict):
            return
        try:
            self._receive(data)
        except Exception:  # one bad message never stops the listener
            log.exception("a message on %s was not handled", self.channel)
