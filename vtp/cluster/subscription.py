"""Listening to one Redis pub/sub channel for as long as the process wants, through Redis
failures: a lost connection is retried (``RECONNECT_S``), and each message's payload is
handed to the listener in the order Redis delivers them.

What is published while the subscription is reconnecting is lost to it (pub/sub is
at-most-once): :class:`vtp.cluster.topic.Topic` and :class:`vtp.cluster.mailbox.Mailbox`
say what that means for their messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

RECONNECT_S = (0.2, 0.5, 1.0, 2.0, 5.0)
START_WAIT_S = 5.0  # the app starts (and reports Redis down) rather than wait for it


class Subscription:
    """``deliver`` is called with the payload of each message on ``channel``; what it
    raises is logged and the listening goes on (one bad message never stops it)."""

    def __init__(self, redis: Redis, channel: str, deliver: Callable[[Any], None]) -> None:
        self.channel = channel
        self._redis = redis
        self._deliver = deliver
        self._task: asyncio.Task[None] | None = None
        self._tried = asyncio.Event()

    async def start(self) -> None:
        """Subscribe, waiting for the first attempt (``START_WAIT_S`` at most): while Redis
        is up, nothing published once the app serves is missed."""
        self._task = asyncio.create_task(self._listen(), name=f"vtp-subscription-{self.channel}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tried.wait(), START_WAIT_S)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

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
            self._deliver(raw)
        except Exception:
            log.exception("a message on %s was not handled", self.channel)
