"""The node registry on a real Redis: registration, heartbeat with load, expiry of a node
that stops beating, removal at shutdown, and the refusal of the embedded Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from vtp.cluster.nodes import LoadSample, NodeInfo, NodeRegistry, cluster_refusal, node_key
from vtp.config import load_config


def _info(node_id: str, region: str = "") -> NodeInfo:
    now = time.time()
    return NodeInfo(
        id=node_id,
        url=f"http://{node_id}.example:8080",
        media_address="10.0.0.1",
        media_port=40000,
        region=region,
        started_at=now,
        heartbeat_at=now,
    )


async def _until(check: Callable[[], object], within: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < within:
        if await check():  # type: ignore[misc]
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within} s")


async def test_nodes_register_beat_with_their_load_and_leave_at_shutdown(redis: Redis) -> None:
    load = {"peers": 0, "forwarded": 0}

    def sample() -> LoadSample:
        return LoadSample(peers=load["peers"], rooms=1, forwarded_packets=load["forwarded"])

    a = NodeRegistry(redis, _info("node-a", "eu"), heartbeat_s=0.2, ttl_s=1.0, sample=sample)
    b = NodeRegistry(redis, _info("node-b"), heartbeat_s=0.2, ttl_s=1.0)
    await a.start()
    await b.start()
    try:
        listed = {n.id: n for n in await a.nodes()}
        assert set(listed) == {"node-a", "node-b"}
        assert listed["node-a"].url == "http://node-a.example:8080"
        assert listed["node-a"].media_port == 40000 and listed["node-a"].region == "eu"
        first = listed["node-a"].heartbeat_at

        load["peers"], load["forwarded"] = 7, 5000

        async def beat_seen() -> bool:
            node = await b.node("node-a")
            return node is not None and node.peers == 7 and node.heartbeat_at > first

        await _until(beat_seen, 2.0)
        node = await b.node("node-a")
        assert node is not None and node.forwarded_pps > 0 and node.rooms_open == 1
        # the entry outlives several TTLs while the heartbeat goes on
        await asyncio.sleep(1.5)
        assert {n.id for n in await b.nodes()} == {"node-a", "node-b"}
    finally:
        await a.close()
    # a clean stop removes the node at once, not after its TTL
    assert await redis.exists(node_key("node-a")) == 0
    assert [n.id for n in await b.nodes()] == ["node-b"]
    await b.close()


async def test_a_node_that_stops_beating_leaves_within_its_ttl(redis: Redis) -> None:
    dead = NodeRegistry(redis, _info("node-dead"), heartbeat_s=0.5, ttl_s=2.0)
    alive = NodeRegistry(redis, _info("node-alive"), heartbeat_s=0.5, ttl_s=2.0)
    await dead.start()
    await alive.start()
    try:
        assert {n.id for n in await alive.nodes()} == {"node-dead", "node-alive"}
        await dead.stop_beating()  # the process froze or died: no more beats, no goodbye
        stopped = time.monotonic()

        async def gone() -> bool:
            return [n.id for n in await alive.nodes()] == ["node-alive"]

        await _until(gone, 3.0)
        assert time.monotonic() - stopped <= 2.0 + 0.6  # TTL after the last beat
        assert await redis.zscore("vtp:cluster:nodes", "node-dead") is None  # pruned
    finally:
        await alive.close()


def test_several_nodes_refuse_the_embedded_redis() -> None:
    embedded = load_config(redis_url=None, database_url="postgresql://x/y")
    message = cluster_refusal(embedded, 2)
    assert message is not None and "REDIS_URL" in message and "--workers 2" in message
    message = cluster_refusal(embedded.model_copy(update={"cluster": True}), 1)
    assert message is not None and "REDIS_URL" in message and "VTP_CLUSTER" in message
    assert cluster_refusal(embedded, 1) is None  # one node alone is fine
    shared = embedded.model_copy(update={"redis_url": "redis://r:6379/0"})
    assert cluster_refusal(shared, 2) is None
    no_db = shared.model_copy(update={"database_url": None})
    assert "DATABASE_URL" in (cluster_refusal(no_db, 2) or "")


def test_a_ttl_too_short_for_the_heartbeat_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        load_config(node_heartbeat_s=4, node_ttl_s=6)
