"""vtp.cluster.topic on real Redis: a message reaches every other process's topic, not
the sender's own, and a malformed one or a failing receiver does not stop the listener."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import BOOM, failing_on_boom
from redis.asyncio import Redis

from vtp.cluster.topic import Topic


async def test_others_hear_a_message_the_sender_does_not(redis: Redis) -> None:
    heard: dict[str, list[dict[str, Any]]] = {"a": [], "b": [], "c": []}
    arrived = asyncio.Event()
    back = asyncio.Event()

    def receiver(name: str) -> Any:
        def receive(data: dict[str, Any]) -> None:
            heard[name].append(data)
            if heard["b"] and heard["c"]:
                arrived.set()
            if heard["a"]:
                back.set()

        return failing_on_boom(receive)

    topics = {name: Topic(redis, "test-topic", receiver(name)) for name in heard}
    for topic in topics.values():
        await topic.start()
    try:
        await redis.publish(topics["a"].channel, "not json")
        await topics["a"].publish(BOOM)
        await topics["a"].publish({"n": 1})
        await asyncio.wait_for(arrived.wait(), 5)
        assert heard["b"] == [{"n": 1}] and heard["c"] == [{"n": 1}]
        # a hears b's message, and never heard its own, which came before on its
        # connection (it acted on it when it sent it)
        await topics["b"].publish({"n": 2})
        await asyncio.wait_for(back.wait(), 5)
        assert heard["a"] == [{"n": 2}]
    finally:
        for topic in topics.values():
            await topic.close()
