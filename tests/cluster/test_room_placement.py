"""Room placement on a real Redis: concurrent openers agree, the least-loaded node (of the
preferred region) is chosen, rooms spread between beats, and a room whose node left the
registry is placed again."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from vtp.cluster.nodes import LoadSample, NodeInfo, NodeRegistry
from vtp.cluster.placement import NoLiveNode, Placement


def _registry(
    redis: Redis,
    node_id: str,
    *,
    peers: int = 0,
    region: str = "",
    url: str | None = None,
    ttl_s: float = 2.0,
) -> NodeRegistry:
    now = time.time()
    info = NodeInfo(
        id=node_id,
        url=url or f"http://{node_id}:8080",
        media_address=None,
        media_port=None,
        region=region,
        started_at=now,
        heartbeat_at=now,
    )
    return NodeRegistry(
        redis, info, heartbeat_s=0.5, ttl_s=ttl_s, sample=lambda: LoadSample(peers=peers)
    )


StartNode = Callable[..., Awaitable[NodeRegistry]]


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[list[Redis]]:
    # one connection pool per "node", as two processes would have
    made = [Redis.from_url(redis_url) for _ in range(2)]
    yield made
    for client in made:
        await client.aclose()


@pytest.fixture
async def started(clients: list[Redis]) -> AsyncIterator[StartNode]:
    """Starts a node's registry (``_registry``'s settings) on the "node"'s own Redis pool
    (0 or 1); each is closed when the test ends (closing again is harmless)."""
    made: list[NodeRegistry] = []

    async def start(pool: int, node_id: str, **settings: Any) -> NodeRegistry:
        registry = _registry(clients[pool], node_id, **settings)
        await registry.start()
        made.append(registry)
        return registry

    yield start
    for registry in made:
        await registry.close()


async def _a_and_b(
    clients: list[Redis], started: StartNode, b_peers: int = 0
) -> tuple[NodeRegistry, NodeRegistry, Placement, Placement]:
    """Nodes a and b (b with this load), each on its own pool, and each one's placement."""
    a, b = await started(0, "a"), await started(1, "b", peers=b_peers)
    return a, b, Placement(clients[0], a, node_ttl_s=2.0), Placement(clients[1], b, node_ttl_s=2.0)


async def test_two_nodes_opening_the_same_rooms_at_once_agree(
    clients: list[Redis], started: StartNode
) -> None:
    a, _, pa, pb = await _a_and_b(clients, started)
    # 40 rooms, each opened twice by each node at once (within redis-py's default
    # pool of 100 connections per client)
    rooms = [f"room-{i}" for i in range(40)]
    answers = await asyncio.gather(
        *(p.place(room) for room in rooms for p in (pa, pb) for _ in range(2))
    )
    by_room: dict[str, set[str]] = {}
    for index, node in enumerate(answers):
        by_room.setdefault(rooms[index // 4], set()).add(node.id)
    assert all(len(owners) == 1 for owners in by_room.values()), by_room
    # and what they agreed on is what Redis holds, and each room counted once
    for room, owners in by_room.items():
        assert await pa.owner(room) == next(iter(owners))
    placed = {n.id: n.rooms_placed for n in await a.nodes()}
    assert sum(placed.values()) == 40
    # equal nodes: the rooms are spread although no beat came between the openings
    assert abs(placed["a"] - placed["b"]) <= 2, placed


async def test_the_least_loaded_node_of_the_preferred_region_is_chosen(
    clients: list[Redis], started: StartNode
) -> None:
    busy = await started(0, "busy", peers=200, region="eu")
    await started(0, "idle", peers=3, region="us")
    placement = Placement(clients[1], busy, node_ttl_s=2.0)
    assert (await placement.place("physics")).id == "idle"
    # each room weighs 10 peers: after ~20 rooms the busy node takes some
    counts = Counter([(await placement.place(f"chem-{i}")).id for i in range(30)])
    assert counts["idle"] > counts["busy"] > 0, counts
    # a region with a node is preferred over load; an unknown region is no constraint
    assert (await placement.place("history", region="eu")).id == "busy"
    assert (await placement.place("art", region="mars")).id in {"idle", "busy"}
    # placed rooms stay where they are whatever the load says now
    assert (await placement.place("physics", region="eu")).id == "idle"


async def test_a_room_is_placed_again_once_its_node_has_left(
    clients: list[Redis], started: StartNode
) -> None:
    # b is never chosen while a is there
    a, b, pa, pb = await _a_and_b(clients, started, b_peers=1000)
    assert (await pb.place("maths")).id == "a"
    assert (await pa.place("latin")).id == "a"
    # a stops beating (killed): while its entry lives the rooms stay there...
    await a.stop_beating()
    assert (await pb.place("maths")).id == "a"
    # ...and once it expired, the next opener places them on a live node
    start = time.monotonic()
    while await pb.owner("maths") is not None:
        assert time.monotonic() - start < 3.0
        await asyncio.sleep(0.05)
    assert (await pb.place("maths")).id == "b"
    assert await pa.owner("maths") == "b"
    assert {n.id: n.rooms_placed for n in await b.nodes()} == {"b": 1}
    # a clean stop releases a node's rooms at once
    assert (await pb.place("greek")).id == "b"
    await pb.release_all()
    assert await pb.owner("greek") is None and await pb.owner("maths") is None


async def test_a_draining_node_keeps_its_rooms_but_gets_no_new_one(
    clients: list[Redis], started: StartNode
) -> None:
    # b is never chosen while a takes rooms
    a, b, pa, pb = await _a_and_b(clients, started, b_peers=1000)
    assert (await pb.place("maths")).id == "a"
    await a.drain()
    # at once, and whichever node asks (b's listing was made before a's beat said so:
    # the script itself reads the draining set)
    assert (await pb.place("latin")).id == "b"
    assert (await pa.place("greek")).id == "b"
    # what it holds stays there...
    assert (await pb.place("maths")).id == "a"
    assert {n.id: n.draining for n in await b.nodes()} == {"a": True, "b": False}
    # ...until it gives it up: then the next opener places it on a node that takes rooms
    await pa.release("maths")
    assert (await pa.place("maths")).id == "b"
    # only draining nodes left: no node takes the room
    await b.drain()
    with pytest.raises(NoLiveNode):
        await pa.place("physics")
    # a node that starts again under the same id takes rooms again
    await a.close()
    await a.start()
    assert (await pb.place("physics")).id == "a"


async def test_a_dead_node_s_room_is_placed_again_before_its_entry_expires(
    clients: list[Redis], started: StartNode
) -> None:
    """Its URL refuses connections (no process there) once it missed a heartbeat: the room
    moves at once, not after the TTL; a silent node whose URL still answers keeps it."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    slow_url = f"http://127.0.0.1:{listening.getsockname()[1]}"
    dead = await started(0, "dead", url=f"http://127.0.0.1:{closed_port}", ttl_s=10.0, region="rd")
    slow = await started(0, "slow", url=slow_url, ttl_s=10.0, region="rs", peers=2000)
    b = await started(1, "b", peers=1000, region="rb")
    pb = Placement(clients[1], b, node_ttl_s=2.0)
    try:
        assert (await pb.place("maths", region="rd")).id == "dead"
        assert (await pb.place("latin", region="rs")).id == "slow"
        await dead.stop_beating()
        await slow.stop_beating()
        await dead.beat()  # (its last beat, now)
        # while its last beat is fresh, it keeps its rooms (no probe)
        assert (await pb.place("maths")).id == "dead"
        started = time.monotonic()
        while (await pb.place("maths")).id == "dead":
            assert time.monotonic() - started < 3.0, "not placed again before the TTL (10 s)"
            await asyncio.sleep(0.1)
        assert (await pb.place("maths")).id == "b"
        assert await pb.owner("maths") == "b"
        # the silent node that still accepts connections keeps its room until its TTL
        assert (await pb.place("latin")).id == "slow"
    finally:
        listening.close()
