"""One Redis pub/sub channel per node: JSON messages addressed to one node of the cluster.

:class:`vtp.cluster.topic.Topic` tells every process; a :class:`Mailbox` is a node's own
address, so that two nodes can hold a conversation (signalling relayed from the node
holding a client's WebSocket to the node holding its room: :mod:`vtp.channel.relay`).

Order: what one process sends goes out through one task, in the order it was sent (a
pipeline of the messages waiting, never two publishes racing on two connections), and
Redis delivers one channel's messages in the order it received them; so what a node
sends to another arrives in order. Pub/sub is at-most-once: a message published while
the receiver is reconnecting to Redis is lost, so a conversation over it must time out
and say so (the relay closes the client's socket, which reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from vtp.cluster.topic import RECONNECT_S, START_WAIT_S

log = logging.getLogger(__name__)

MAX_BATCH = 256  # messages written in one pipeline
FLUSH_S = 2.0


def mailbox_channel(redis: Redis, node_id: str) -> str:
    db = redis.connection_pool.connection_kwargs.get("db", 0)
    # (per database, as Topic: installations sharing a Redis server must not meet)
    return f"vtp:mailbox:{db}:{node_id}"


class Mailbox:
    """This node's address (``receive`` is called with each message sent to it, in
    order) and the way to write to the others'."""

    def __init__(
        self, redis: Redis, node_id: str, receive: Callable[[dict[str, Any]], None]
    ) -> None:
        self.node_id = node_id
        self.channel = mailbox_channel(redis, node_id)
        self._redis = redis
        self._receive = receive
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._tried = asyncio.Event()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name=f"vtp-mailbox-in-{self.node_id}"),
            asyncio.create_task(self._write(), name=f"vtp-mailbox-out-{self.node_id}"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tried.wait(), START_WAIT_S)

    async def close(self) -> None:
        """Stop listening, once what was sent is written (``FLUSH_S`` at most: a node
        stopping tells the others why their sockets close)."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.join(), FLUSH_S)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def send(self, node_id: str, data: dict[str, Any]) -> None:
        """Queue ``data`` for node ``node_id`` (sent in order, soon; never raises)."""
        self._outbox.put_nowait((mailbox_channel(self._redis, node_id), json.dumps(data)))

    async def _write(self) -> None:
        while True:
            batch = [await self._outbox.get()]
            while len(batch) < MAX_BATCH and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            try:
                if len(batch) == 1:
                    await self._redis.publish(*batch[0])
                else:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for channel, payload in batch:
                            pipe.publish(channel, payload)
                        await pipe.execute()
            except (RedisError, OSError):
                # (lost, as pub/sub loses what is published while a receiver is away:
                # the conversation's timeouts tell)
                log.exception("%d message(s) to other nodes not sent", len(batch))
            finally:
                for _ in batch:
                    self._outbox.task_done()

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
            data = json.loads(raw)
        except (ValueError, TypeError):
            log.warning("ignored a malformed message on %s", self.channel)
            return
        if not isinstance(data, dict):
            return
        try:
            self._receive(data)
        except Exception:  # one bad message never stops the listener
            log.exception("a message on %s was not handled", self.channel)
