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

from vtp.cluster.subscription import Subscription

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
        self._inbox = Subscription(redis, self.channel, self._received)
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._writer = asyncio.create_task(self._write(), name=f"vtp-mailbox-{self.node_id}")
        await self._inbox.start()

    async def close(self, *, flush: bool = True) -> None:
        """Stop listening, once what was sent is written (``FLUSH_S`` at most: a node
        stopping tells the others why their sockets close); ``flush=False``: at once,
        what is not written yet is lost (as when a node dies)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            if flush:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._outbox.join(), FLUSH_S)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        await self._inbox.close()

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

    def _received(self, raw: Any) -> None:
        try:
            data = json.loads(raw)
        except (ValueError, TypeError):
            log.warning("ignored a malformed message on %s", self.channel)
            return
        if isinstance(data, dict):
            self._receive(data)
