"""WHEP egress: a WHIP publish watched over WHEP (the viewer offers, the server answers)."""

from __future__ import annotations

import asyncio
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

SDP = {"Content-Type": "application/sdp"}
FRAG = {"Content-Type": "application/trickle-ice-sdpfrag"}


async def live_stream(client: Any, room: str, auth: dict[str, str]) -> str:
    """The room's first stream id once its connection is up."""
    for _ in range(100):
        resp = await client.get(f"/api/v1/sfu/rooms/{room}", headers=auth)
        streams = (await resp.json())["streams"]
        if streams:
            return str(streams[0])
        await asyncio.sleep(0.05)
    raise AssertionError("the WHIP stream never came up")


async def whep_offer(viewer: Viewer, kinds: tuple[str, ...] = ("video", "audio")) -> str:
    for kind in kinds:
        viewer.pc.addTransceiver(kind, direction="recvonly")
    await viewer.pc.setLocalDescription(await viewer.pc.createOffer())
    return str(viewer.pc.localDescription.sdp)


async def test_whip_publish_watched_over_whep(client: Any, accounts: Any) -> None:
    teacher = await accounts.with_role("teacher")
    student = await accounts.with_role("student")
    t_auth = bearer(teacher["access_token"])
    s_auth = bearer(student["access_token"])

    resp = await client.post("/api/v1/whep/live", data="v=0", headers={**SDP, **s_auth})
    assert resp.status == 404  # nothing published yet

    pub_pc, offer = await publisher_offer(RED)
    resp = await client.post("/api/v1/whip/live", data=offer, headers={**SDP, **t_auth})
    assert resp.status == 201
    whip_location = resp.headers["Location"]
    await set_answer(pub_pc, await resp.text())

    # the room's first stream, once its connection is up
    stream_id = await live_stream(client, "live", t_auth)
    viewer = Viewer()
    whep_sdp = await whep_offer(viewer)
    resp = await client.post("/api/v1/whep/live", data=whep_sdp, headers={**SDP, **s_auth})
    answer = await resp.text()
    assert resp.status == 201, answer
    assert resp.content_type == "application/sdp"
    location = resp.headers["Location"]
    assert location.startswith("/api/v1/whep/live/sessions/")
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    await set_answer(viewer.pc, answer)
    await viewer.wait_frames(10)
    assert_frames_show(viewer.frames, RED)
    assert viewer.audio_frames > 0

    # by stream id, video only
    video_only = Viewer()
    resp = await client.post(
        f"/api/v1/whep/live/{stream_id}",
        data=await whep_offer(video_only, ("video",)),
        headers={**SDP, **t_auth},
    )
    assert resp.status == 201
    await set_answer(video_only.pc, await resp.text())
    await video_only.wait_frames(10)
    assert_frames_show(video_only.frames, RED)
    assert video_only.audio_frames == 0

    etag = resp.headers["ETag"]
    second = resp.headers["Location"]
    frag = "a=end-of-candidates\r\n"
    resp = await client.patch(second, data=frag, headers={**FRAG, **t_auth, "If-Match": etag})
    assert resp.status == 204
    resp = await client.delete(second, headers=s_auth)  # not the owner
    assert resp.status == 403
    resp = await client.delete(second, headers=t_auth)
    assert resp.status == 200

    # The publisher stops: the WHEP session ends with the stream.
    resp = await client.delete(whip_location, headers=t_auth)
    assert resp.status == 200
    for _ in range(50):
        resp = await client.delete(location, headers=s_auth)
        if resp.status == 404:
            break
        await asyncio.sleep(0.1)
    assert resp.status == 404
    admin = await accounts.with_role("admin")  # everyone has left: only an admin may look
    resp = await client.get("/api/v1/sfu/rooms/live", headers=bearer(admin["access_token"]))
    assert (await resp.json())["peers"] == []
    for pc in (viewer, video_only):
        await pc.close()
    await pub_pc.close()


async def test_whep_errors(client: Any, accounts: Any) -> None:
    teacher = await accounts.with_role("teacher")
    auth = bearer(teacher["access_token"])
    pub_pc, offer = await publisher_offer(RED)
    resp = await client.post("/api/v1/whip/w2", data=offer, headers={**SDP, **auth})
    await set_answer(pub_pc, await resp.text())
    stream_id = await live_stream(client, "w2", auth)

    resp = await client.post(f"/api/v1/whep/w2/{stream_id}", data=offer, headers=SDP)
    assert resp.status == 401
    resp = await client.post("/api/v1/whep/w2/nope", data=offer, headers={**SDP, **auth})
    assert resp.status == 404
    assert_error(await resp.json(), "not_found")
    resp = await client.post(
        f"/api/v1/whep/w2/{stream_id}", data="v=0\r\nx", headers={**SDP, **auth}
    )
    assert resp.status == 400
    assert_error(await resp.json(), "bad_sdp")
    resp = await client.post(
        f"/api/v1/whep/w2/{stream_id}", data="not sdp", headers={**SDP, **auth}
    )
    assert resp.status == 400
    resp = await client.get("/api/v1/sfu/rooms/w2", headers=auth)
    assert [p["via"] for p in (await resp.json())["peers"]] == ["whip"]  # no leftovers
    resp = await client.options(f"/api/v1/whep/w2/{stream_id}")
    assert resp.status == 204
    await pub_pc.close()
