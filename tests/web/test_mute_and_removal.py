"""Mute and removal are enforced by the server (issue 11): a muted student's media stops at
the SFU, whatever their client does; a removed student is refused on every way into the
class, including one who came only into the SFU room (and was in the attendance)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from helpers import assert_error, bearer, class_session, ok
from sfu_api.ws_peers import (
    BLUE,
    config,  # noqa: F401  (loopback ICE for the app under test)
    connect,
    publish,
    publisher_offer,
    subscribe,
)
from web.test_live_channel import _open

pytestmark = pytest.mark.asyncio

SDP = {"Content-Type": "application/sdp"}


async def _until(what: Callable[[], bool], within: float, message: str) -> None:
    deadline = time.monotonic() + within
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(0.05)


async def _silent(count: Callable[[], int], after: float) -> float:
    """Wait until ``count()`` stops growing (nothing for 0.5 s); returns how long after
    ``after`` (time.monotonic(), just before the mute) the last increase was seen."""
    last, last_at = count(), after
    deadline = time.monotonic() + 5
    while time.monotonic() - last_at < 0.5:
        assert time.monotonic() < deadline, "still flowing 5 s after the mute"
        await asyncio.sleep(0.02)
        if count() != last:
            last, last_at = count(), time.monotonic()
    return last_at - after


async def _flowing(count: Callable[[], int], more: int = 10) -> None:
    start = count()
    await _until(lambda: count() >= start + more, 5, f"{count() - start} new, wanted {more}")


async def test_mute_stops_forwarding_until_an_allowed_unmute(client: Any, accounts: Any) -> None:
    teacher = await accounts.with_role("teacher")
    ada = await accounts.with_role("student")
    session = await class_session(client, teacher, [ada])
    sid = session["id"]
    may_publish = {"students_may_publish": True}
    await ok(client, "PATCH", f"/api/v1/sessions/{sid}", teacher, json=may_publish)
    room = (await ok(client, "POST", f"/api/v1/sessions/{sid}/join", ada))["room_name"]
    t = await _open(client, sid, teacher)
    await t.next("ready")
    a = await _open(client, sid, ada)
    await a.next("ready")
    # Ada publishes camera and microphone over signalling; the teacher decodes both.
    ada_sfu = await connect(client, ada["access_token"])
    await ada_sfu.request("join", "joined", room=room)
    pub_pc, stream_id = await publish(ada_sfu, BLUE)
    t_sfu = await connect(client, teacher["access_token"])
    await t_sfu.request("join", "joined", room=room)
    await t_sfu.wait("stream-added", stream_id=stream_id)
    viewer, _ = await subscribe(t_sfu, stream_id)
    await _flowing(lambda: viewer.audio_frames, 25)
    ada_id = ada["user"]["id"]
    from vtp.appkeys import SFU_KEY
    from vtp.signalling.members import MEMBERS

    tracks = client.app[SFU_KEY].get_room(room).publication(stream_id).tracks
    up_audio = next(t for t in tracks if t.kind == "audio")
    up_video = next(t for t in tracks if t.kind == "video")

    def audio() -> int:
        """Audio packets the SFU sent the teacher (retransmissions included)."""
        return sum(d.packets + d.retransmitted for d in up_audio.downs)

    def video() -> int:
        return sum(d.packets + d.retransmitted for d in up_video.downs)

    # A locked mute: the SFU stops forwarding her audio within 1 s; her video goes on.
    await t.send(type="mute", user_id=ada_id, locked=True)
    muted_at = time.monotonic()
    told = await a.next("muted")
    assert told == {
        "type": "muted",
        "user_id": ada_id,
        "kind": "audio",
        "by": teacher["user"]["display_name"],
        "locked": True,
    }
    assert (await t.next("muted"))["user_id"] == ada_id  # everyone knows
    assert await _silent(audio, muted_at) < 1.0
    sent = audio()
    await viewer.wait_frames(10)
    assert up_audio.withheld > 0 and up_video.withheld == 0
    # She may not lift a locked mute; the SFU still withholds her audio.
    await a.send(type="unmute")
    assert (await a.next("error"))["error"]["code"] == "mute_locked"
    await asyncio.sleep(0.5)
    assert audio() == sent
    # A second peer of hers, and a publication started now, are muted as well.
    second = await connect(client, ada["access_token"])
    await second.request("join", "joined", room=room)
    pc2, stream2 = await publish(second, BLUE)

    peers = [m.peer for m in client.app[MEMBERS].in_room(room) if str(m.user_id) == ada_id]
    assert len(peers) == 2 and all(p.muted == {"audio"} for p in peers)
    new_pub = client.app[SFU_KEY].get_room(room).publication(stream2)
    assert [t.muted for t in new_pub.tracks if t.kind == "audio"] == [True]
    # The teacher unmutes (lifting the lock): forwarding resumes.
    await t.send(type="unmute", user_id=ada_id)
    unmuted = await a.next("unmuted")
    assert unmuted["user_id"] == ada_id and unmuted["kind"] == "audio"
    assert (await t.next("unmuted"))["by"] == teacher["user"]["display_name"]
    await _flowing(audio)
    await _flowing(lambda: viewer.audio_frames)  # (and the teacher decodes it)
    # An unlocked mute she may lift herself.
    await t.send(type="mute", user_id=ada_id)
    assert (await a.next("muted"))["locked"] is False
    await t.next("muted")
    assert await _silent(audio, time.monotonic()) < 1.0
    await a.send(type="unmute")
    assert (await t.next("unmuted"))["by"] == ada["user"]["display_name"]
    await _flowing(audio)
    await a.send(type="unmute")
    assert (await a.next("error"))["error"]["code"] == "not_muted"

    # A video stop: frames stop; after the unmute they resume (from a keyframe).
    await t.send(type="mute", user_id=ada_id, kind="video")
    stopped_at = time.monotonic()
    await a.next("muted")
    assert await _silent(video, stopped_at) < 1.0
    await t.send(type="mute", user_id=ada_id, kind="screen")
    assert (await t.next("error"))["error"]["code"] == "validation_error"
    await a.send(type="unmute", kind="video")
    await a.next("unmuted")
    await viewer.wait_frames(10)

    for pc in (viewer, pub_pc, pc2):
        await pc.close()
    for ws in (ada_sfu, second, t_sfu):
        await ws.close()


async def test_removed_sfu_only_student_is_refused_everywhere(
    client: Any, accounts: Any, database_url: str
) -> None:
    teacher = await accounts.with_role("teacher")
    ben = await accounts.with_role("student")
    session = await class_session(client, teacher, [ben])
    sid = session["id"]
    ben_auth = bearer(ben["access_token"])
    room = (await ok(client, "POST", f"/api/v1/sessions/{sid}/join", ben))["room_name"]
    said = await ok(client, "POST", f"/api/v1/sessions/{sid}/chat", ben, json={"body": "hi"})
    t = await _open(client, sid, teacher)
    await t.next("ready")
    # Ben enters the SFU room only (no classroom channel) and watches the teacher.
    t_sfu = await connect(client, teacher["access_token"])
    await t_sfu.request("join", "joined", room=room)
    teacher_pc, stream_id = await publish(t_sfu, BLUE)
    ben_sfu = await connect(client, ben["access_token"])
    await ben_sfu.request("join", "joined", room=room)
    viewer, _ = await subscribe(ben_sfu, stream_id)
    await viewer.wait_frames(5)
    # The teacher sees him (not on the channel), and he is in the attendance.
    joined = await t.next("participant-joined")
    assert joined["participant"]["user_id"] == ben["user"]["id"]
    assert joined["participant"]["channel"] is False
    lines = await ok(client, "GET", f"/api/v1/sessions/{sid}/attendance", teacher)
    ben_line = next(x for x in lines["items"] if x["user_id"] == ben["user"]["id"])
    assert ben_line["joins"] == 1 and ben_line["present_now"] is True

    # "remove" finds him although he never opened the channel.
    await t.send(type="remove", user_id=ben["user"]["id"], reason="wrong class")
    assert (await t.next("participant-left"))["user_id"] == ben["user"]["id"]
    await ben_sfu.wait("left")
    frames = len(viewer.frames)
    await asyncio.sleep(0.5)
    assert len(viewer.frames) - frames <= 2  # (what was in flight)

    async def refused(method: str, path: str, code: str, **kw: Any) -> None:
        headers = {**ben_auth, **kw.pop("headers", {})}
        resp = await client.request(method, path, headers=headers, **kw)
        assert resp.status == 403, (path, resp.status, await resp.text())
        assert_error(await resp.json(), code)

    await refused("POST", f"/api/v1/sessions/{sid}/join", "removed")
    await refused("GET", f"/api/v1/sessions/{sid}/chat", "removed")
    await refused("POST", f"/api/v1/sessions/{sid}/chat", "removed", json={"body": "back!"})
    await refused("PATCH", f"/api/v1/chat/{said['id']}", "removed", json={"body": "edited"})
    await refused("DELETE", f"/api/v1/chat/{said['id']}", "removed")
    # His signalling socket is closed (4403: the right to the room is gone); a new one
    # is refused the room.
    assert await ben_sfu.closed() == 4403
    ben_again = await connect(client, ben["access_token"])
    await ben_again.send(type="join", request_id="again", room=room)
    await ben_again.error("forbidden", request_id="again")
    _, offer = await publisher_offer(BLUE)
    transport = {"direction": "recv", "stream_id": stream_id}
    await refused("POST", f"/api/v1/sfu/rooms/{room}/transports", "forbidden", json=transport)
    await refused("POST", f"/api/v1/whip/{room}", "forbidden", data=offer, headers=SDP)
    await refused("POST", f"/api/v1/whep/{room}", "forbidden", data=offer, headers=SDP)
    again = await _open(client, sid, ben)
    assert (await again.next("error"))["error"]["code"] == "removed"
    # Others are not affected: the teacher still chats.
    await ok(client, "POST", f"/api/v1/sessions/{sid}/chat", teacher, json={"body": "on we go"})

    # His attendance row was closed when his peer left.
    async def ben_rows() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetch(
                "SELECT left_at FROM session_participants WHERE session_id = $1 AND user_id = $2",
                uuid.UUID(sid),
                uuid.UUID(ben["user"]["id"]),
            )
        finally:
            await conn.close()

    deadline = time.monotonic() + 5
    while (rows := await ben_rows()) and rows[0]["left_at"] is None:
        assert time.monotonic() < deadline, "his attendance row stayed open"
        await asyncio.sleep(0.1)
    assert len(rows) == 1
    await viewer.close()
    await teacher_pc.close()
    for ws in (ben_sfu, t_sfu):
        await ws.close()
