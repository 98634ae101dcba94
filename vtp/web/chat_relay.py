"""Chat delivery across the nodes of a cluster.

A class's live channel is on the node of its room (:mod:`vtp.web.live`), but a chat
message is posted through the REST API of whichever node the author's page came from. Each
node delivers what is posted through it to its own live rooms (the hook of
:mod:`vtp.web.live`) and, with ``VTP_CLUSTER``, publishes it on a Redis topic; the other
nodes deliver it to theirs. (At-most-once, as the live delivery is: the classroom also
loads the history when it opens.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from vtp.api.chat import CHAT_HOOKS, ChatHook
from vtp.appkeys import CONFIG, REDIS
from vtp.cluster.topic import Topic

TOPIC = "chat"


def relay_ctx(deliver: ChatHook) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context relaying chat events (``deliver``: to this node's rooms)."""

    async def relay(app: web.Application) -> AsyncIterator[None]:
        if not app[CONFIG].cluster:
            yield
            return
        pending: set[asyncio.Task[None]] = set()

        def received(event: dict[str, Any]) -> None:
            task = asyncio.ensure_future(deliver(event))
            pending.add(task)
            task.add_done_callback(pending.discard)

        topic = Topic(app[REDIS], TOPIC, received)

        async def publish(event: dict[str, Any]) -> None:
            if event.get("session_id"):  # (course chat has no live room to reach)
                await topic.publish(event)

        await topic.start()
        hooks = app[CHAT_HOOKS]
        hooks.append(publish)
        try:
            yield
        finally:
            hooks.remove(publish)
            await topic.close()
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    return relay
