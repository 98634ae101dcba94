"""vtp.cluster.mailbox on real Redis: what a node sends to another reaches that node only,
in the order it was sent (bursts go out as pipelines), and a malformed message or a
failing receiver does not stop the listener."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import BOOM, failing_on_boom
from redis.asyncio import Redis

from vtp.cluster.mailbox import Mailbox


async def test_messages_reach_their_node_only_and_in_order(redis: Redis) -> None:
    heard: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    count = 2000
    all_in = asyncio.Event()
    a_heard = asyncio.Event()

    def receiver(name: str) -> Any:
        def receive(data: dict[str, Any]) -> None:
            heard[name].append(int(data["n"]))
            if name == "a":
                a_heard.set()
            if len(heard["b"]) == count:
                all_in.set()

        return failing_on_boom(receive)

    boxes = {name: Mailbox(redis, f"node-{name}", receiver(name)) for name in heard}
    for box in boxes.values():
        await box.start()
    try:
        await redis.publish(boxes["b"].channel, "not json")
        boxes["a"].send("node-b", BOOM)
        for n in range(count):  # (queued at once: written in pipelines, in order)
            boxes["a"].send("node-b", {"n": n})
            if n % 500 == 0:
                await asyncio.sleep(0)
        await asyncio.wait_for(all_in.wait(), 10)
        assert heard["b"] == list(range(count))
        boxes["c"].send("node-a", {"n": -1})
        await asyncio.wait_for(a_heard.wait(), 5)
        assert heard["a"] == [-1] and heard["c"] == []
    finally:
        for box in boxes.values():
            await box.close()
