"""Limits per user on the classroom live channel, against the real server: a flooding
student loses their own socket (4429) and nobody else's; a slow reader gets coalesced
state; a user's open WebSockets are capped (live channel and SFU signalling together)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from helpers import class_session
from rawws import RawWebSocket

from tests.web.test_live_channel import Channel, _open
from vtp.config import Config
from vtp.limits.leases import Leases
from vtp.web.live import LIVE_ROOMS

pytestmark = pytest.mark.asyncio


async def _raw(client: Any, session_id: str, who: dict[str, Any], **kw: Any) -> RawWebSocket:
    ws = await RawWebSocket.open(
        client.server.host, client.server.port, f"/api/v1/sessions/{session_id}/live", **kw
    )
    await ws.send({"type": "auth", "token": who["access_token"]})
    while (msg := await ws.receive()) is not None and msg["type"] != "ready":
        pass
    assert msg is not None, ws.close_code
    return ws


async def _still_open(channel: Channel) -> None:
    await channel.send(type="ping")
    await channel.next("pong", within=10)
    assert not channel.ws.closed


async def test_a_flood_closes_the_flooders_socket_only(client: Any, accounts: Any) -> None:
    teacher = await accounts.with_role("teacher")
    honest = [await accounts.with_role("student") for _ in range(2)]
    flooder = await accounts.with_role("student")
    session = await class_session(client, teacher, [*honest, flooder])
    sid = session["id"]
    receivers = [await _open(client, sid, who) for who in (teacher, *honest)]
    for channel in receivers:
        await channel.next("ready")
    raw = await _raw(client, sid, flooder)

    # 700 hand frames in ONE TCP write
    await raw.send(*({"type": "hand", "raised": i % 2 == 0} for i in range(700)))
    seen = await raw.until_closed()
    assert raw.close_code == 4429
    assert any(m["type"] == "error" and m["error"]["code"] == "rate_limited" for m in seen)
    raw.close()

    # every honest channel is open and answers
    left = await receivers[0].next("participant-left", within=15)
    assert left["user_id"] == flooder["user"]["id"]
    for channel in receivers:
        await _still_open(channel)
    closed = sum(1 for c in receivers if c.ws.closed)
    print(f"flood: flooder closed with {raw.close_code}; honest channels closed: {closed}/3")
    assert closed == 0


async def test_a_slow_reader_gets_coalesced_state(
    aiohttp_client: Any, config: Config, accounts: Any
) -> None:
    from vtp.app import create_app

    # a burst large enough that nobody is flooding: the point is the slow receiver
    client = await aiohttp_client(
        create_app(config.model_copy(update={"live_message_burst": 10_000}))
    )
    accounts.client = client
    teacher = await accounts.with_role("teacher")
    slow_user = await accounts.with_role("student")
    busy = await accounts.with_role("student")
    session = await class_session(client, teacher, [slow_user, busy])
    sid = session["id"]
    t = await _open(client, sid, teacher)
    await t.next("ready")
    slow = await _raw(client, sid, slow_user, receive_buffer=2048)
    sender = await _open(client, sid, busy)
    await sender.next("ready")

    n = 1000  # ~110 kB of hand messages for every receiver; the slow one reads none yet
    for i in range(n):
        await sender.send(type="hand", raised=i % 2 == 0)  # ends lowered (n is even)
    await sender.send(type="ping")  # handled in order: after the pong, all hands were
    await sender.next("pong", within=30)

    room = client.app[LIVE_ROOMS].rooms[uuid.UUID(sid)]
    conn = next(iter(room.participants[uuid.UUID(slow_user["user"]["id"])].connections))
    assert conn.out.coalesced > 0 and conn.out.qsize() < 10  # latest state, no backlog

    hands = []
    while True:
        msg = await slow.receive()
        assert msg is not None, f"the slow reader was closed ({slow.close_code})"
        if msg["type"] == "hand" and msg["user_id"] == busy["user"]["id"]:
            hands.append(msg)
            if not msg["raised"] and conn.out.qsize() == 0:
                break
    print(f"slow reader: {len(hands)} hand messages of {n} sent, {conn.out.coalesced} coalesced")
    assert len(hands) < n and hands[-1]["raised"] is False
    slow.close()


async def test_websockets_per_user_are_capped(
    aiohttp_client: Any, config: Config, accounts: Any
) -> None:
    from vtp.app import create_app

    client = await aiohttp_client(
        create_app(config.model_copy(update={"max_websockets_per_user": 3}))
    )
    accounts.client = client
    teacher = await accounts.with_role("teacher")
    student = await accounts.with_role("student")
    session = await class_session(client, teacher, [student])
    sid = session["id"]
    auth = {"Authorization": f"Bearer {student['access_token']}"}
    live = [await _open(client, sid, student) for _ in range(2)]
    for channel in live:
        await channel.next("ready")
    sfu = await client.ws_connect("/api/v1/sfu/ws", headers=auth)
    assert (await sfu.receive_json())["type"] == "authenticated"

    # a fourth: SFU signalling with a Bearer header is refused before the upgrade ...
    resp = await client.get(
        "/api/v1/sfu/ws",
        headers={
            **auth,
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
    )
    assert resp.status == 429
    assert (await resp.json())["error"]["code"] == "too_many_sessions"
    # ... with an auth message, and on the live channel, it gets an error and 4429
    ws = await client.ws_connect("/api/v1/sfu/ws")
    await ws.send_json({"type": "auth", "token": student["access_token"]})
    codes = []
    async for msg in ws:
        codes.append(msg.json()["type"] if msg.type.name == "TEXT" else None)
    assert ws.close_code == 4429 and "error" in codes
    extra = await _open(client, sid, student)
    assert (await extra.next("error"))["error"]["code"] == "too_many_sessions"
    await extra.ws.receive()
    assert extra.ws.close_code == 4429
    # the others are untouched; one closes and its slot is free again
    await _still_open(live[0])
    await live[1].ws.close()
    deadline = time.monotonic() + 10
    while True:
        again = await _open(client, sid, student)
        first = await again.ws.receive_json(timeout=10)
        if first["type"] == "ready":
            break
        assert first["error"]["code"] == "too_many_sessions"
        assert time.monotonic() < deadline, "the closed socket's slot was not given back"
        await asyncio.sleep(0.05)
    await sfu.close()


async def test_leases_of_a_crashed_process_lapse(redis_url: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        crashed = Leases(redis, "test", ttl_s=1.0)  # never refreshed: as if it died
        assert await crashed.take("u", 2) and await crashed.take("u", 2)
        alive = Leases(redis, "test", ttl_s=1.0)
        assert await alive.take("u", 2) is None
        deadline = time.monotonic() + 5
        while (lease := await alive.take("u", 2)) is None:
            assert time.monotonic() < deadline, "leases of a dead process never lapsed"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.7)
        await alive.refresh()  # a live process keeps its lease past the first ttl
        await asyncio.sleep(0.7)
        assert await alive.count("u") == 1
        await alive.give_back(lease)
        assert await alive.count("u") == 0
    finally:
        await redis.aclose()


async def test_chat_messages_per_user_are_limited(
    aiohttp_client: Any, config: Config, accounts: Any
) -> None:
    from vtp.app import create_app

    client = await aiohttp_client(create_app(config.model_copy(update={"chat_max_messages": 3})))
    accounts.client = client
    teacher = await accounts.with_role("teacher")
    student = await accounts.with_role("student")
    session = await class_session(client, teacher, [student])
    auth = {"Authorization": f"Bearer {student['access_token']}"}
    path = f"/api/v1/sessions/{session['id']}/chat"
    statuses = []
    for i in range(4):
        resp = await client.post(path, json={"body": f"hello {i}"}, headers=auth)
        statuses.append(resp.status)
    assert statuses == [201, 201, 201, 429]
    body = await resp.json()
    assert body["error"]["code"] == "rate_limited" and int(resp.headers["Retry-After"]) > 0
    # the course channel counts against the same allowance; the teacher has their own
    resp = await client.post(
        f"/api/v1/courses/{session['course_id']}/chat", json={"body": "hi"}, headers=auth
    )
    assert resp.status == 429
    teacher_auth = {"Authorization": f"Bearer {teacher['access_token']}"}
    resp = await client.post(path, json={"body": "class, calm down"}, headers=teacher_auth)
    assert resp.status == 201


async def test_the_websocket_cap_holds_across_processes(
    aiohttp_client: Any, config: Config, accounts: Any
) -> None:
    """Two VTP apps sharing PostgreSQL and Redis, as two processes would."""
    from vtp.app import create_app

    capped = config.model_copy(update={"max_websockets_per_user": 3})
    one = await aiohttp_client(create_app(capped))
    two = await aiohttp_client(create_app(capped))
    accounts.client = one
    student = await accounts.with_role("student")
    auth = {"Authorization": f"Bearer {student['access_token']}"}
    open_ = [await one.ws_connect("/api/v1/sfu/ws", headers=auth) for _ in range(2)]
    open_.append(await two.ws_connect("/api/v1/sfu/ws", headers=auth))
    for ws in open_:
        assert (await ws.receive_json(timeout=10))["type"] == "authenticated"
    for app_client in (one, two):
        ws = await app_client.ws_connect("/api/v1/sfu/ws")
        await ws.send_json({"type": "auth", "token": student["access_token"]})
        seen = [msg.json() async for msg in ws if msg.type.name == "TEXT"]
        assert ws.close_code == 4429, seen
        assert seen[-1]["error"]["code"] == "too_many_sessions"
    for ws in open_:
        await ws.close()
