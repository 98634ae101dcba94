"""/api/v1/sfu REST: health, capabilities, ICE servers, the transports flow, room state."""

from __future__ import annotations

from typing import Any

from helpers import assert_error, bearer
from ws_peers import (
    RED,
    Viewer,
    assert_frames_show,
    config,  # noqa: F401  (loopback ICE for the app under test)
    publisher_offer,
    set_answer,
)

ROOM = "/api/v1/sfu/rooms/rest-room"


async def test_health_capabilities_and_ice_servers(client: Any, accounts: Any) -> None:
    resp = await client.get("/api/v1/sfu/health")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"

    resp = await client.get("/api/v1/sfu/rtp-capabilities")
    assert resp.status == 401
    assert_error(await resp.json(), "not_authenticated")
    user = await accounts.register()
    token = (await accounts.login(user["user"]["email"], user["password"]))["access_token"]
    resp = await client.get("/api/v1/sfu/rtp-capabilities", headers=bearer(token))
    caps = await resp.json()
    assert {c["mimeType"].lower() for c in caps["codecs"]} == {
        "audio/opus",
        "video/vp8",
        "video/h264",
        "video/vp9",
    }
    assert caps["headerExtensions"]
    resp = await client.get("/api/v1/sfu/ice-servers", headers=bearer(token))
    assert (await resp.json()) == {"ice_servers": []}


async def test_transports_flow_and_room_state(client: Any, accounts: Any) -> None:
    teacher = await accounts.with_role("teacher")
    student = await accounts.with_role("student")
    outsider = await accounts.with_role("student")
    other_teacher = await accounts.with_role("teacher")
    t_auth = bearer(teacher["access_token"])
    s_auth = bearer(student["access_token"])

    # send transport = create + produce: offer in, answer out
    pub_pc, offer = await publisher_offer(RED)
    resp = await client.post(
        f"{ROOM}/transports",
        json={"direction": "send", "sdp": offer, "label": "cam"},
        headers=t_auth,
    )
    send = await resp.json()
    assert resp.status == 201, send
    assert send["type"] == "answer" and send["stream_id"] == send["transport_id"]
    assert " 127.0.0.1 " in send["sdp"]  # the loopback config fixture is in force
    assert resp.headers["Location"] == f"{ROOM}/transports/{send['transport_id']}"
    await set_answer(pub_pc, send["sdp"])

    # recv transport = create + consume: the server offers, connect answers
    resp = await client.post(
        f"{ROOM}/transports",
        json={"direction": "recv", "stream_id": send["stream_id"]},
        headers=s_auth,
    )
    recv = await resp.json()
    assert resp.status == 201, recv
    assert recv["type"] == "offer"
    viewer = Viewer()
    answer = await viewer.answer(recv["sdp"])
    connect_url = f"{ROOM}/transports/{recv['transport_id']}/connect"
    resp = await client.post(connect_url, json={"sdp": answer}, headers=s_auth)
    assert resp.status == 204, await resp.text()
    resp = await client.post(connect_url, json={"sdp": answer}, headers=s_auth)
    assert_error(await resp.json(), "bad_state")
    await viewer.wait_frames(10)
    assert_frames_show(viewer.frames, RED)

    ice_url = f"{ROOM}/transports/{recv['transport_id']}/ice"
    resp = await client.post(ice_url, json={"candidate": None}, headers=s_auth)
    assert resp.status == 204
    resp = await client.post(ice_url, json={"candidate": "candidate:junk"}, headers=s_auth)
    assert resp.status == 400
    assert_error(await resp.json(), "bad_candidate")
    # someone else's transport does not exist for you
    resp = await client.post(ice_url, json={"candidate": None}, headers=t_auth)
    assert resp.status == 404
    resp = await client.post(
        f"{ROOM}/transports/{send['transport_id']}/connect", json={"sdp": answer}, headers=t_auth
    )
    assert_error(await resp.json(), "bad_state")

    # room state: members and teachers yes, other students no
    resp = await client.get(ROOM, headers=s_auth)
    state = await resp.json()
    assert resp.status == 200, state
    assert {p["user_id"] for p in state["peers"]} == {
        teacher["user"]["id"],
        student["user"]["id"],
    }
    assert {p["via"] for p in state["peers"]} == {"rest"}
    [producer] = state["producers"]
    assert producer["id"] == send["stream_id"] and producer["label"] == "cam"
    assert all(t["packets"] > 0 and t["bytes"] > 0 for t in producer["tracks"])
    [consumer] = state["consumers"]
    assert consumer["stream"] == send["stream_id"]
    assert any(t["packets"] > 0 for t in consumer["tracks"])
    resp = await client.get(ROOM, headers=bearer(outsider["access_token"]))
    assert resp.status == 403
    assert_error(await resp.json(), "forbidden")
    resp = await client.get(ROOM, headers=bearer(other_teacher["access_token"]))
    assert resp.status == 200
    resp = await client.get("/api/v1/sfu/rooms/nowhere", headers=t_auth)
    assert resp.status == 404

    # close: the subscriber's transport, then the publisher's
    resp = await client.delete(f"{ROOM}/transports/{recv['transport_id']}", headers=t_auth)
    assert resp.status == 404
    resp = await client.delete(f"{ROOM}/transports/{recv['transport_id']}", headers=s_auth)
    assert resp.status == 204
    resp = await client.delete(f"{ROOM}/transports/{recv['transport_id']}", headers=s_auth)
    assert resp.status == 404
    resp = await client.delete(f"{ROOM}/transports/{send['transport_id']}", headers=t_auth)
    assert resp.status == 204
    resp = await client.get(ROOM, headers=t_auth)
    state = await resp.json()
    assert state["peers"] == [] and state["producers"] == []
    await viewer.close()
    await pub_pc.close()


async def test_transport_errors(client: Any, accounts: Any) -> None:
    teacher = await accounts.with_role("teacher")
    auth = bearer(teacher["access_token"])
    resp = await client.post(f"{ROOM}/transports", json={"direction": "send"}, headers=auth)
    assert resp.status == 400
    error = assert_error(await resp.json(), "validation_error")
    assert error["details"] == [{"field": "sdp", "message": "required for direction 'send'"}]
    resp = await client.post(
        f"{ROOM}/transports", json={"direction": "sideways", "sdp": "x"}, headers=auth
    )
    assert_error(await resp.json(), "validation_error")
    resp = await client.post(
        f"{ROOM}/transports", json={"direction": "send", "sdp": "v=0\r\nnope"}, headers=auth
    )
    assert resp.status == 400
    assert_error(await resp.json(), "bad_sdp")
    resp = await client.post(
        f"{ROOM}/transports", json={"direction": "recv", "stream_id": "none"}, headers=auth
    )
    assert resp.status == 404
    assert_error(await resp.json(), "not_found")
    resp = await client.post(
        "/api/v1/sfu/rooms/bad%20name/transports",
        json={"direction": "recv", "stream_id": "x"},
        headers=auth,
    )
    assert resp.status == 400
    resp = await client.post(f"{ROOM}/transports", json={"direction": "send", "sdp": "x"})
    assert resp.status == 401
    # A failed first transport leaves no REST peer behind.
    resp = await client.get(ROOM, headers=auth)
    assert resp.status == 200
    assert (await resp.json())["peers"] == []
