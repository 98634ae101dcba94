"""WHIP ingest (RFC 9725): an aiortc publisher POSTs its offer; a WebSocket peer watches."""

from __future__ import annotations

from typing import Any

from helpers import assert_error, bearer
from ws_peers import (
    BLUE,
    assert_frames_show,
    config,  # noqa: F401  (loopback ICE for the app under test)
    connect,
    publisher_offer,
    set_answer,
    subscribe,
)

SDP = {"Content-Type": "application/sdp"}
FRAG = {"Content-Type": "application/trickle-ice-sdpfrag"}


async def test_whip_publish_watched_over_websocket(client: Any, accounts: Any) -> None:
    teacher = await accounts.with_role("teacher")
    student = await accounts.with_role("student")
    auth = bearer(teacher["access_token"])

    watcher = await connect(client, student["access_token"])
    await watcher.request("join", "joined", room="whip-room")

    resp = await client.options("/api/v1/whip/whip-room")
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    assert resp.headers["Accept-Post"] == "application/sdp"

    pc, offer = await publisher_offer(BLUE)
    resp = await client.post("/api/v1/whip/whip-room", data=offer, headers={**SDP, **auth})
    answer = await resp.text()
    assert resp.status == 201, answer
    assert resp.content_type == "application/sdp" and answer.startswith("v=0")
    location = resp.headers["Location"]
    etag = resp.headers["ETag"]
    assert location.startswith("/api/v1/whip/whip-room/") and etag.startswith('"')
    assert "Location" in resp.headers["Access-Control-Expose-Headers"]
    await set_answer(pc, answer)

    added = await watcher.wait("stream-added")
    assert added["label"] == "whip"
    viewer, _ = await subscribe(watcher, added["stream_id"])
    await viewer.wait_frames(10)
    assert_frames_show(viewer.frames, BLUE)

    # Trickle ICE with PATCH; ICE restarts are refused.
    frag = "a=ice-ufrag:{}\r\na=ice-pwd:x\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
    ufrag = next(ln[12:] for ln in offer.splitlines() if ln.startswith("a=ice-ufrag:"))
    end = frag.format(ufrag) + "a=end-of-candidates\r\n"
    resp = await client.patch(location, data=end, headers={**FRAG, **auth, "If-Match": etag})
    assert resp.status == 204, await resp.text()
    resp = await client.patch(location, data=end, headers={**FRAG, **auth, "If-Match": '"x"'})
    assert resp.status == 412
    resp = await client.patch(location, data=end, headers={**FRAG, **auth, "If-Match": "*"})
    assert resp.status == 422
    restart = frag.format("newufrag")
    resp = await client.patch(location, data=restart, headers={**FRAG, **auth})
    assert resp.status == 422
    assert_error(await resp.json(), "ice_restart_unsupported")
    resp = await client.patch(location, data=end, headers={**SDP, **auth})
    assert resp.status == 415
    resp = await client.get(location, headers=auth)
    assert resp.status == 405

    # Only its owner (or an admin) ends the session.
    resp = await client.delete(location, headers=bearer(student["access_token"]))
    assert resp.status == 403
    resp = await client.delete(location)
    assert resp.status == 401
    resp = await client.delete(location, headers=auth)
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    await watcher.wait("stream-removed", stream_id=added["stream_id"])
    resp = await client.delete(location, headers=auth)
    assert resp.status == 404
    await viewer.close()
    await pc.close()
    await watcher.close()


async def test_whip_errors(client: Any, accounts: Any) -> None:
    teacher = await accounts.with_role("teacher")
    auth = bearer(teacher["access_token"])
    _, offer = await publisher_offer(BLUE)
    resp = await client.post("/api/v1/whip/w", data=offer, headers=SDP)
    assert resp.status == 401
    resp = await client.post(
        "/api/v1/whip/w", data=offer, headers={"Content-Type": "text/plain", **auth}
    )
    assert resp.status == 415
    assert_error(await resp.json(), "unsupported_media_type")
    resp = await client.post("/api/v1/whip/w", data="v=0\r\nbad", headers={**SDP, **auth})
    assert resp.status == 400
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert_error(await resp.json(), "bad_sdp")
    # The refused offer left no peer behind (an admin looks: the teacher is not in the room).
    admin = await accounts.with_role("admin")
    resp = await client.get("/api/v1/sfu/rooms/w", headers=bearer(admin["access_token"]))
    assert (await resp.json())["peers"] == []
