"""The WebSocket signalling protocol with real aiortc peers over loopback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from ws_peers import (
    BLUE,
    RED,
    WsClient,
    assert_frames_show,
    config,  # noqa: F401  (loopback ICE for the app under test)
    connect,
    publish,
    publisher_offer,
    subscribe,
)


async def test_publish_late_joiner_subscribes_and_publisher_leaves(
    client: Any, accounts: Any
) -> None:
    teacher = await accounts.with_role("teacher")
    student = await accounts.register()
    login = await accounts.login(student["user"]["email"], student["password"])

    a = await connect(client, teacher["access_token"])
    joined_a = await a.request("join", "joined", room="maths-1")
    assert joined_a["role"] == "presenter" and joined_a["peers"] == []
    assert joined_a["ice_servers"] == []  # no STUN/TURN configured: nothing external
    pub_pc, stream_id = await publish(a, RED)
    added = await a.wait("stream-added", stream_id=stream_id)  # the publisher hears it too
    assert added["peer_id"] == joined_a["peer_id"]

    # A late joiner learns about the peer and its stream, then subscribes.
    b = await connect(client, login["access_token"])
    joined_b = await b.request("join", "joined", room="maths-1")
    assert joined_b["role"] == "viewer" and joined_b["may_publish"] is True
    assert [p["peer_id"] for p in joined_b["peers"]] == [joined_a["peer_id"]]
    assert joined_b["peers"][0]["role"] == "presenter"
    late = await b.wait("stream-added", stream_id=stream_id)
    assert sorted(t["kind"] for t in late["tracks"]) == ["audio", "video"]
    assert {t["codec"].lower() for t in late["tracks"]} == {"audio/opus", "video/vp8"}
    await b.wait("track-added", stream_id=stream_id, kind="video")
    peer_joined = await a.wait("peer-joined")
    assert peer_joined["peer"]["peer_id"] == joined_b["peer_id"]
    assert peer_joined["peer"]["user_id"] == student["user"]["id"]

    speaker = await b.wait("active-speaker")  # the publisher's tone
    assert speaker["peer_id"] == joined_a["peer_id"]
    asked = time.monotonic()
    viewer, sub_id = await subscribe(b, stream_id)
    await b.wait("connection-state", connection_id=sub_id, state="connected")
    await viewer.wait_frames(15)
    # A keyframe was requested for the late joiner (aiortc's encoder would otherwise send
    # the next one 3,000 frames later): its first frame comes within a second (measured: ~0.1 s).
    assert viewer.first_frame_at is not None and viewer.first_frame_at - asked < 1.0
    assert_frames_show(viewer.frames, RED)
    assert viewer.audio_frames > 0

    # The publisher's WebSocket closes: its stream ends for everyone.
    await a.close()
    await b.wait("stream-removed", stream_id=stream_id)
    closed = await b.wait("subscription-closed", subscription_id=sub_id)
    assert closed["stream_id"] == stream_id
    left = await b.wait("peer-left", peer_id=joined_a["peer_id"])
    assert left["reason"] == "disconnected"
    await b.request("subscribe", "error", stream_id=stream_id)
    await viewer.close()
    await pub_pc.close()
    await b.close()


async def test_bad_messages_get_errors_while_the_room_keeps_forwarding(
    client: Any, accounts: Any
) -> None:
    teacher = await accounts.with_role("teacher")
    other = await accounts.with_role("student")
    pub = await connect(client, teacher["access_token"])
    await pub.request("join", "joined", room="r2")
    pub_pc, stream_id = await publish(pub, BLUE)
    watcher = await connect(client, other["access_token"])
    await watcher.request("join", "joined", room="r2")
    viewer, _ = await subscribe(watcher, stream_id)
    await viewer.wait_frames(5)

    bad = await connect(client, other["access_token"])
    await bad.ws.send_str("{not json")
    await bad.error("invalid_json")
    await bad.ws.send_str("[1, 2]")
    await bad.error("invalid_json")
    await bad.send(type="teleport", request_id="x1")
    await bad.error("unknown_type", request_id="x1")
    await bad.send(request_id="x2")
    await bad.error("validation_error", request_id="x2")
    _, offer = await publisher_offer(RED)
    await bad.send(type="publish", sdp=offer, request_id="x3")
    await bad.error("not_joined", request_id="x3")
    await bad.send(type="subscribe", stream_id=stream_id, request_id="x4")
    await bad.error("not_joined", request_id="x4")
    await bad.send(type="join", room="r2", extra=1, request_id="x5")
    err = await bad.error("validation_error", request_id="x5")
    assert err["error"]["details"] == [{"field": "extra", "message": "unknown field"}]
    await bad.send(type="join", room="no spaces allowed", request_id="x6")
    await bad.error("forbidden", request_id="x6")
    await bad.request("join", "joined", room="r2")
    await bad.send(type="join", room="r3", request_id="x7")
    await bad.error("already_joined", request_id="x7")
    await bad.send(type="auth", token="x", request_id="x8")
    await bad.error("token_invalid", request_id="x8")
    await bad.send(type="publish", sdp="v=0\r\nthis is not sdp", request_id="x9")
    await bad.error("bad_sdp", request_id="x9")
    no_codecs = offer.replace("VP8", "VP9").replace("opus", "PCMU")
    await bad.send(type="publish", sdp=no_codecs, request_id="x10")
    await bad.error("bad_sdp", request_id="x10")
    await bad.send(type="subscribe", stream_id="nope", request_id="x11")
    await bad.error("not_found", request_id="x11")
    await bad.send(type="answer", subscription_id="nope", sdp="v=0", request_id="x12")
    await bad.error("not_found", request_id="x12")
    await bad.send(type="unpublish", stream_id=stream_id, request_id="x13")  # not its own
    await bad.error("not_found", request_id="x13")
    await bad.send(type="ice", connection_id="nope", candidate=None, request_id="x14")
    await bad.error("not_found", request_id="x14")
    # A real subscription answered with garbage, then answered twice.
    offer_msg = await bad.request("subscribe", "offer", stream_id=stream_id)
    sub_id = offer_msg["subscription_id"]
    await bad.send(type="answer", subscription_id=sub_id, sdp="garbage", request_id="x15")
    await bad.error("bad_sdp", request_id="x15")
    await bad.send(type="ice", connection_id=sub_id, candidate="candidate:bogus", request_id="x16")
    await bad.error("bad_candidate", request_id="x16")
    # The publisher itself sends nonsense: its stream keeps flowing.
    await pub.ws.send_str("\x00\x01")
    await pub.error("invalid_json")
    assert await pub.request("ping", "pong")

    await viewer.wait_frames(20)
    assert_frames_show(viewer.frames, BLUE)
    # The bad client's session still works.
    assert await bad.request("ping", "pong")
    for conn in (bad, watcher, pub):
        await conn.close()
    await viewer.close()
    await pub_pc.close()


async def test_authentication(client: Any, accounts: Any) -> None:
    account = await accounts.register()
    login = await accounts.login(account["user"]["email"], account["password"])
    token = login["access_token"]

    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/api/v1/sfu/ws", headers={"Authorization": "Bearer junk"})
    assert info.value.status == 401

    # Browsers: the first message authenticates.
    ws = WsClient(await client.ws_connect("/api/v1/sfu/ws"))
    await ws.send(type="auth", token="junk", request_id="a")
    await ws.error("token_invalid", request_id="a")
    await asyncio.wait_for(ws._reader, 5)
    assert ws.ws.close_code == 4401

    ws = WsClient(await client.ws_connect("/api/v1/sfu/ws"))
    await ws.send(type="join", room="r")
    await ws.error("not_authenticated")
    await asyncio.wait_for(ws._reader, 5)
    assert ws.ws.close_code == 4401

    # A token in the URL is not accepted.
    ws = WsClient(await client.ws_connect(f"/api/v1/sfu/ws?token={token}"))
    await ws.send(type="ping")
    await ws.error("not_authenticated")
    await asyncio.wait_for(ws._reader, 5)

    ws = WsClient(await client.ws_connect("/api/v1/sfu/ws"))
    await ws.send(type="auth", token=token, request_id="ok")
    auth = await ws.wait("authenticated", request_id="ok")
    assert auth["user_id"] == account["user"]["id"] and auth["role"] == "student"
    joined = await ws.request("join", "joined", room="r")
    left = await ws.request("leave", "left")
    assert left["room"] == "r" and left["reason"] == "left"
    await ws.send(type="leave", request_id="again")
    await ws.error("not_joined", request_id="again")
    rejoined = await ws.request("join", "joined", room="r")
    assert rejoined["peer_id"] != joined["peer_id"]
    await ws.close()

    # A plain GET (no upgrade) gets a JSON error.
    resp = await client.get("/api/v1/sfu/ws", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 400


async def test_idle_websocket_peer_stays_in_the_room(client: Any, accounts: Any) -> None:
    """A joined peer with no media connection is kept while its WebSocket is open."""
    from vtp.appkeys import SFU_KEY

    sfu = client.app[SFU_KEY]
    sfu.peer_timeout_s = 1.0
    teacher = await accounts.with_role("teacher")
    conn = await connect(client, teacher["access_token"])
    joined = await conn.request("join", "joined", room="idle")
    await asyncio.sleep(3)
    assert await conn.request("ping", "pong")
    assert [m for m in conn.seen if m["type"] == "left"] == []
    room = sfu.get_room("idle")
    assert room is not None and joined["peer_id"] in room.peers
    await conn.close()


async def test_auth_renews_the_token_and_logout_closes_the_socket(
    client: Any, accounts: Any
) -> None:
    account = await accounts.register()
    first = await accounts.login(account["user"]["email"], account["password"])
    other = await accounts.register()
    conn = await connect(client, first["access_token"])
    await conn.request("join", "joined", room="recheck")

    await conn.send(type="auth", token=other["access_token"], request_id="a1")
    await conn.error("forbidden", request_id="a1")  # another user's token
    fresh = await accounts.login(account["user"]["email"], account["password"])
    auth = await conn.request("auth", "authenticated", token=fresh["access_token"])
    assert auth["user_id"] == account["user"]["id"]
    # The socket now holds the fresh login's token: the first login's logout spares it.
    resp = await client.post(
        "/api/v1/auth/logout", headers={"Authorization": f"Bearer {first['access_token']}"}
    )
    assert resp.status == 204
    await conn.request("ping", "pong")
    # Its own login's logout closes it: the peer leaves, then 4401.
    resp = await client.post(
        "/api/v1/auth/logout", headers={"Authorization": f"Bearer {fresh['access_token']}"}
    )
    assert resp.status == 204
    left = await conn.wait("left")
    assert left["room"] == "recheck" and "signed out" in left["reason"]
    await conn.error("token_revoked")
    assert await conn.closed() == 4401
    await conn.close()


async def test_room_closed_tells_its_peers(client: Any, accounts: Any) -> None:
    from vtp.appkeys import SFU_KEY

    teacher = await accounts.with_role("teacher")
    conn = await connect(client, teacher["access_token"])
    await conn.request("join", "joined", room="closing")
    room = client.app[SFU_KEY].get_room("closing")
    await room.close()  # what ending a course live session does
    left = await conn.wait("left")
    assert left == {"type": "left", "room": "closing", "reason": "room closed", "request_id": None}
    await conn.request("join", "joined", room="closing")  # a new room of that name
    await conn.close()


async def test_a_user_has_at_most_eight_peers_in_a_room(client: Any, accounts: Any) -> None:
    student = await accounts.with_role("student")
    token = student["access_token"]
    conns = [await connect(client, token) for _ in range(9)]
    for conn in conns[:8]:
        await conn.request("join", "joined", room="crowd")
    await conns[8].send(type="join", room="crowd", request_id="ninth")
    await conns[8].error("too_many_peers", request_id="ninth")
    await conns[8].request("join", "joined", room="elsewhere")  # per room
    _, offer = await publisher_offer(RED)
    resp = await client.post(
        "/api/v1/whip/crowd",
        data=offer,
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
    )
    assert resp.status == 429
    await conns[0].request("leave", "left")
    await conns[8].request("leave", "left")
    await conns[8].request("join", "joined", room="crowd")  # a place was freed
    for conn in conns:
        await conn.close()
