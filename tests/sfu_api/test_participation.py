"""Participation end to end: a student speaks (a scripted aiortc tone, audio levels set
by aiortc) over WebSocket signalling in a live class and raises a hand twice on the
classroom channel; when the class ends, the attendance (JSON and CSV) and the
``session.summary`` event carry their talk time, turns, hands and chat messages, and the
stream tells who joined, published and left."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from typing import Any

from helpers import bearer, ok
from test_authority import live_class, open_channel
from ws_peers import (
    config,  # noqa: F401  (loopback ICE for the app under test)
    connect,
    new_pc,
    set_answer,
)

from tests.sfu.test_talk_time import END_S, SCRIPT, ScriptedSpeaker
from tests.support.waiting import eventually
from vtp.appkeys import CONFIG, REDIS
from vtp.events.stream import EVENTS
from vtp.web.participation import PARTICIPATION


async def test_talk_time_hands_and_chat_reach_attendance_csv_and_summary(
    client: Any, accounts: Any
) -> None:
    c = await live_class(client, accounts, students_may_publish=True)
    sid, room = c["session"]["id"], c["session"]["room_name"]
    student_id = c["member"]["user"]["id"]
    channel = await open_channel(client, sid, c["member"]["access_token"])
    for raised in (True, False, True):
        await channel.send(type="hand", raised=raised)
        await channel.wait("hand")
    await ok(client, "POST", f"/api/v1/sessions/{sid}/chat", c["member"], json={"body": "hi"})

    student = await connect(client, c["member"]["access_token"])
    await student.request("join", "joined", room=room)
    speaker = ScriptedSpeaker()
    pc = new_pc()
    pc.addTrack(speaker)
    try:
        await pc.setLocalDescription(await pc.createOffer())
        reply = await student.request(
            "publish", "published", sdp=pc.localDescription.sdp, label="mic"
        )
        await set_answer(pc, reply["sdp"])
        await eventually(lambda: speaker.media_s >= END_S, END_S + 15)
        await asyncio.sleep(0.7)  # (the last speaker interval closes)
    finally:
        await pc.close()
    await ok(client, "POST", f"/api/v1/sessions/{sid}/end", c["teacher"])

    expected = sum(end - start for start, end in SCRIPT)
    await client.server.app[PARTICIPATION].wait()  # (the end's summary, written after it)
    report = await ok(client, "GET", f"/api/v1/sessions/{sid}/attendance", c["teacher"])
    line = next(i for i in report["items"] if i["user_id"] == student_id)
    print(f"talk {line['talk_seconds']} s (tone {expected} s), turns {line['turns']}")
    assert abs(line["talk_seconds"] - expected) <= 0.5  # (whole seconds in the API)
    assert line["turns"] == len(SCRIPT)
    assert line["hands_raised"] == 2 and line["chat_messages"] == 1

    resp = await client.get(
        f"/api/v1/sessions/{sid}/attendance.csv", headers=bearer(c["teacher"]["access_token"])
    )
    rows = {r["user_id"]: r for r in csv.DictReader(io.StringIO(await resp.text()))}
    assert rows[student_id]["turns"] == str(len(SCRIPT))
    assert rows[student_id]["hands_raised"] == "2"
    assert rows[student_id]["talk_seconds"] == str(line["talk_seconds"])

    app = client.server.app
    await app[EVENTS].flush()
    entries = await app[REDIS].xrange(app[CONFIG].events_stream)
    events = [json.loads(f[b"event"]) for _, f in entries]
    ours = [e for e in events if e["session_id"] == sid]
    kinds = [e["type"] for e in ours]
    summary = ours[-1]
    assert summary["type"] == "session.summary", kinds
    counted = next(p for p in summary["data"]["participants"] if p["user_id"] == student_id)
    assert abs(counted["talk_seconds"] - expected) <= 0.05 * expected, counted
    assert counted["turns"] == len(SCRIPT) and counted["hands_raised"] == 2
    assert counted["chat_messages"] == 1 and counted["minutes_present"] >= 0.1
    mine = [e for e in ours if e["data"].get("user_id") == student_id]
    assert [e["type"] for e in mine if e["type"] != "participant.hand_raised"][:2] == [
        "participant.joined",
        "publication.started",
    ]
    assert sum(e["type"] == "participant.hand_raised" for e in mine) == 2
    assert "publication.stopped" in kinds
    left = [e for e in mine if e["type"] == "participant.left"]
    assert [e["data"]["reason"] for e in left] == ["session_ended"]
    await channel.close()
    await student.close()


async def _left_reasons(client: Any, sid: str) -> dict[str, list[str]]:
    app = client.server.app
    await app[EVENTS].flush()
    entries = await app[REDIS].xrange(app[CONFIG].events_stream)
    reasons: dict[str, list[str]] = {}
    for _, fields in entries:
        event = json.loads(fields[b"event"])
        if event["session_id"] == sid and event["type"] == "participant.left":
            reasons.setdefault(event["data"]["user_id"], []).append(event["data"]["reason"])
    return reasons


async def test_why_participants_left(client: Any, accounts: Any) -> None:
    """left (the channel closed), removed (by the teacher), vanished (their last way in
    was an SFU peer whose socket dropped without a goodbye)."""
    c = await live_class(client, accounts)
    sid, room = c["session"]["id"], c["session"]["room_name"]
    leaver = await accounts.with_role("student")
    removed = await accounts.with_role("student")
    for who in (leaver, removed):
        await ok(
            client,
            "POST",
            f"/api/v1/courses/{c['course']['id']}/enrollments",
            c["teacher"],
            json={"user_id": who["user"]["id"], "role": "student"},
        )
    teacher = await open_channel(client, sid, c["teacher"]["access_token"])
    leaving = await open_channel(client, sid, leaver["access_token"])
    await leaving.close()
    out = await open_channel(client, sid, removed["access_token"])
    await teacher.send(type="remove", user_id=removed["user"]["id"], reason="bye")
    await out.wait("removed")
    vanishing = await connect(client, c["member"]["access_token"])
    await vanishing.request("join", "joined", room=room)
    await vanishing.ws.close()  # no "leave": the socket just went away

    want = {
        leaver["user"]["id"]: ["left"],
        removed["user"]["id"]: ["removed"],
        c["member"]["user"]["id"]: ["vanished"],
    }

    async def reasons() -> dict[str, list[str]]:
        return await _left_reasons(client, sid)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while {k: v for k, v in (await reasons()).items() if k in want} != want:
        assert loop.time() < deadline, await reasons()
        await asyncio.sleep(0.05)
    await teacher.close()
