"""Caps per user over the SFU and its signalling, against the real server: rooms at once,
peer connections over all rooms, WHIP publications, and a flooding signalling socket
(closed with 4429 while the user's other socket goes on)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import assert_error, bearer
from rawws import RawWebSocket
from ws_peers import RED, connect, publisher_offer

from vtp.config import Config

SDP = {"Content-Type": "application/sdp"}


@pytest.fixture
def config(config: Config) -> Config:
    return config.model_copy(
        update={
            "ice_addresses": ["127.0.0.1"],
            "room_grace_s": 2.0,
            "sfu_open_rooms": True,
            "max_rooms_per_user": 2,
            "max_peer_connections_per_user": 2,
            "max_whip_per_user": 1,
            "signalling_message_burst": 20,
            "signalling_message_rate": 5.0,
        }
    )


async def test_rooms_and_peer_connections_per_user(client: Any, accounts: Any) -> None:
    teacher = await accounts.with_role("teacher")
    student = await accounts.with_role("student")
    token = student["access_token"]
    first, second, third = [await connect(client, token) for _ in range(3)]
    await first.request("join", "joined", room="caps-a")
    await second.request("join", "joined", room="caps-b")
    await third.send(type="join", room="caps-c", request_id="j")
    await third.error("too_many_rooms", request_id="j")
    resp = await client.post(
        "/api/v1/sfu/rooms/caps-c/transports",
        json={"direction": "recv", "stream_id": "x"},
        headers=bearer(token),
    )
    assert resp.status == 429
    assert_error(await resp.json(), "too_many_rooms")
    await third.request("join", "joined", room="caps-a")  # a room they are in: fine

    # a stream to subscribe to
    pc, offer = await publisher_offer(RED)
    resp = await client.post(
        "/api/v1/sfu/rooms/caps-a/transports",
        json={"direction": "send", "sdp": offer},
        headers=bearer(teacher["access_token"]),
    )
    assert resp.status == 201, await resp.text()
    stream_id = (await resp.json())["stream_id"]
    try:
        await first.request("subscribe", "offer", stream_id=stream_id)
        await third.request("subscribe", "offer", stream_id=stream_id)
        await first.send(type="subscribe", stream_id=stream_id, request_id="s3")
        await first.error("too_many_connections", request_id="s3")
    finally:
        await pc.close()
    for conn in (first, second, third):
        await conn.close()


async def test_whip_publications_per_user(client: Any, accounts: Any) -> None:
    teacher = await accounts.with_role("teacher")
    auth = bearer(teacher["access_token"])
    pcs = []
    try:
        pc, offer = await publisher_offer(RED)
        pcs.append(pc)
        resp = await client.post("/api/v1/whip/whip-a", data=offer, headers={**SDP, **auth})
        assert resp.status == 201, await resp.text()
        pc, offer = await publisher_offer(RED)
        pcs.append(pc)
        resp = await client.post("/api/v1/whip/whip-b", data=offer, headers={**SDP, **auth})
        assert resp.status == 429
        assert_error(await resp.json(), "too_many_publications")
    finally:
        for pc in pcs:
            await pc.close()


async def test_a_flooding_signalling_socket_is_closed_alone(client: Any, accounts: Any) -> None:
    student = await accounts.with_role("student")
    calm = await connect(client, student["access_token"])
    raw = await RawWebSocket.open(client.server.host, client.server.port, "/api/v1/sfu/ws")
    await raw.send({"type": "auth", "token": student["access_token"]})
    await raw.send(*({"type": "ping", "request_id": f"p{i}"} for i in range(200)))
    seen = await raw.until_closed()
    assert raw.close_code == 4429
    assert any(m["type"] == "error" and m["error"]["code"] == "rate_limited" for m in seen)
    assert sum(1 for m in seen if m["type"] == "pong") <= 20
    raw.close()
    await calm.request("ping", "pong")  # the user's other socket goes on
    await calm.close()
