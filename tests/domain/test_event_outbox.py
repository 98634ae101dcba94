"""The event outbox (issue 17): an event commits with its change and reaches the Redis
Stream afterwards, whatever happens between the commit and the XADD (the process dies,
Redis is down, the relay dies after XADD), once or again with the same id, in order."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from domain_helpers import World
from redis.asyncio import Redis

from vtp.appkeys import CONFIG, DB, REDIS
from vtp.config import Config
from vtp.db import event_outbox
from vtp.events.envelope import new_event
from vtp.events.stream import EVENTS, EventStream


async def poll(check: Callable[[], Awaitable[Any]], within: float = 15.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def stream_entries(redis: Redis, key: str) -> list[dict[str, Any]]:
    return [json.loads(fields[b"event"]) for _, fields in await redis.xrange(key)]


async def live_session(world: World) -> str:
    return await world.start_session("Outbox")


async def chat(world: World, client: Any, sid: str, body: str) -> None:
    resp = await client.post(
        f"/api/v1/sessions/{sid}/chat", json={"body": body}, headers=world.student.headers
    )
    assert resp.status == 201, await resp.text()


async def stop_relay(stream: EventStream) -> None:
    """This process stops relaying, as if it died right after its commits."""
    relay = stream._tasks[1]
    relay.cancel()
    await asyncio.gather(relay, return_exceptions=True)


async def test_a_process_that_dies_after_the_commit_loses_no_event(
    world: World, aiohttp_client: Any, config: Config
) -> None:
    """The chat commits on node A, which dies before its relay appends the event; node B
    (or A restarted) appends it: once, with the id it was committed with."""
    from vtp.app import create_app

    app = world.client.server.app
    sid = await live_session(world)
    await stop_relay(app[EVENTS])
    await chat(world, world.client, sid, "before the crash")
    rows = await event_outbox.oldest(app[DB], 100)
    assert [r.event_type for r in rows] == ["chat.message"]
    committed_id = rows[0].event_id
    key = app[CONFIG].events_stream
    assert committed_id not in {e["id"] for e in await stream_entries(app[REDIS], key)}

    other = await aiohttp_client(create_app(config))  # the next node to relay
    await poll(lambda: _outbox_empty(app[DB]))
    await other.server.app[EVENTS].flush()
    events = await stream_entries(app[REDIS], key)
    ours = [e for e in events if e["session_id"] == sid]
    assert [e["type"] for e in ours] == ["session.scheduled", "session.started", "chat.message"]
    assert [e["id"] for e in events].count(committed_id) == 1
    assert ours[-1]["id"] == committed_id and ours[-1]["data"]["body"] == "before the crash"
    await other.close()


async def test_a_redis_outage_loses_nothing_and_keeps_the_order(world: World) -> None:
    """While Redis is unreachable, committed events wait in the outbox (requests still
    answer, after the bounded wait); when it is back they arrive in order, once."""
    app = world.client.server.app
    stream: EventStream = app[EVENTS]
    key = app[CONFIG].events_stream
    sid = await live_session(world)
    real = stream.redis
    stream.redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        for i in range(4):
            await chat(world, world.client, sid, f"during {i}")
        rows = await event_outbox.oldest(app[DB], 100)
        assert [r.event_type for r in rows] == ["chat.message"] * 4
    finally:
        await stream.redis.aclose()
        stream.redis = real
    await stream.flush()
    assert await _outbox_empty(app[DB])
    ours = [e for e in await stream_entries(real, key) if e["session_id"] == sid]
    bodies = [e["data"].get("body") for e in ours if e["type"] == "chat.message"]
    assert bodies == [f"during {i}" for i in range(4)]
    assert len({e["id"] for e in ours}) == len(ours)


async def test_a_relay_that_dies_after_xadd_repeats_the_same_ids(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """XADD succeeded but the DELETE never committed (the relay died in between): the
    rows are appended again, with the same ids (at-least-once; consumers deduplicate)."""
    app = world.client.server.app
    stream: EventStream = app[EVENTS]
    key = app[CONFIG].events_stream
    sid = await live_session(world)
    await stop_relay(stream)
    await chat(world, world.client, sid, "twice")
    real_delete = event_outbox.delete
    failures = 0

    async def dying_delete(conn: Any, seqs: list[int]) -> None:
        nonlocal failures
        failures += 1
        raise ConnectionError("relay died before its commit")

    monkeypatch.setattr(event_outbox, "delete", dying_delete)
    with pytest.raises(ConnectionError):
        await stream.relay_once()
    monkeypatch.setattr(event_outbox, "delete", real_delete)
    assert failures == 1
    assert await stream.relay_once()
    assert await _outbox_empty(app[DB])
    chats = [
        e
        for e in await stream_entries(app[REDIS], key)
        if e["session_id"] == sid and e["type"] == "chat.message"
    ]
    assert len(chats) == 2 and chats[0] == chats[1]  # same id, same body


async def test_two_relays_append_in_commit_order_without_duplicates(world: World) -> None:
    """Several nodes relay at once: one at a time holds the relay lock, so the stream
    holds the rows in seq order, each once."""
    app = world.client.server.app
    pool: asyncpg.Pool = app[DB]
    redis: Redis = app[REDIS]
    key = "vtp:test-outbox-order"
    await stop_relay(app[EVENTS])
    for batch in range(6):
        async with pool.acquire() as conn, conn.transaction():
            events = [new_event("chat.message", body=f"{batch}-{i}") for i in range(100)]
            await app[EVENTS].record(conn, events)
    relays = [EventStream(redis, pool, key, 100_000) for _ in range(3)]
    results = await asyncio.gather(*(r.relay_once() for r in relays for _ in range(4)))
    assert any(results)
    await relays[0].flush()  # (what a pass that lost the lock midway left)
    bodies = [e["data"]["body"] for e in await stream_entries(redis, key)]
    assert bodies == [f"{b}-{i}" for b in range(6) for i in range(100)]
    assert sum(r.appended for r in relays) == 600


async def _outbox_empty(pool: asyncpg.Pool) -> bool:
    return await event_outbox.count(pool) == 0
