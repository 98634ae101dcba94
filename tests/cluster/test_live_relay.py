"""Any door, for the classroom live channel: two nodes (in-process apps sharing real
PostgreSQL and Redis). The class's room is on node A; a student whose live channel
reaches node B stays connected to B, which relays her channel to A over Redis
(vtp.channel.relay): she is one of the class's participants on A like the teacher there
(participant lists, hands, media, mute, chat, recording state, attendance), her
removal closes her socket on B, and either node dying ends the other's side of it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp import WSMsgType
from helpers import Accounts, class_session, ok
from two_nodes import die, two_nodes, until

from vtp.appkeys import PLACEMENT
from vtp.channel.relay import RELAY
from vtp.config import Config
from vtp.web.live import LIVE_ROOMS

FAST_BEATS = {"node_heartbeat_s": 0.5, "node_ttl_s": 1.5}  # (node deaths seen quickly)


class Live:
    """One live-channel WebSocket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, **msg: Any) -> None:
        await self.ws.send_json(msg)

    async def next(self, kind: str, within: float = 5, **match: Any) -> dict[str, Any]:
        """The next message of this type (and these fields); others are skipped."""
        deadline = time.monotonic() + within
        while True:
            msg = await self.ws.receive_json(timeout=max(0.01, deadline - time.monotonic()))
            if msg["type"] == kind and all(msg.get(k) == v for k, v in match.items()):
                result: dict[str, Any] = msg
                return result

    async def closed(self, within: float = 10) -> int:
        """The code of the server's close frame (messages before skipped). Not the
        client's own close_code: that says 1006 when the server lets go of the connection
        before the client's reply to its close frame went out."""
        deadline = time.monotonic() + within
        while not self.ws.closed:
            msg = await self.ws.receive(timeout=max(0.01, deadline - time.monotonic()))
            if msg.type == WSMsgType.CLOSE:
                return int(msg.data)
        return int(self.ws.close_code)


async def _open(client: Any, session_id: str, who: dict[str, Any]) -> Live:
    ws = await client.ws_connect(f"/api/v1/sessions/{session_id}/live")
    await ws.send_json({"type": "auth", "token": who["access_token"]})
    return Live(ws)


async def _in_class(client: Any, session_id: str, who: dict[str, Any]) -> Live:
    """``who``'s live channel through this node, once it is ready."""
    live = await _open(client, session_id, who)
    await live.next("ready")
    return live


# nodes A and B, the teacher, the student, their live session
Lesson = tuple[Any, Any, dict[str, Any], dict[str, Any], dict[str, Any]]
MakeClass = Callable[..., Awaitable[Lesson]]


@pytest.fixture
def make_class(
    aiohttp_server: Any, aiohttp_client: Any, config: Config, database_url: str
) -> MakeClass:
    """Makes nodes A and B (with these settings), a teacher, a student and their live
    session, placed on A."""

    async def make(**settings: Any) -> Lesson:
        a, b = await two_nodes(aiohttp_server, aiohttp_client, config, **settings)
        accounts = Accounts(a, database_url)
        teacher = await accounts.with_role("teacher")
        student = await accounts.with_role("student")
        session = await class_session(a, teacher, [student])
        assert await a.app[PLACEMENT].owner(session["room_name"]) == "node-a"
        return a, b, teacher, student, session

    return make


async def test_a_student_through_node_b_is_in_the_class_on_node_a(
    make_class: MakeClass, database_url: str
) -> None:
    a, b, teacher, student, session = await make_class()
    sid = session["id"]
    teacher_id, student_id = teacher["user"]["id"], student["user"]["id"]
    on_a = await _in_class(a, sid, teacher)
    via_b = await _open(b, sid, student)

    # she is in the class on A, through B; each sees the other
    ready = await via_b.next("ready")
    assert ready["you"] == {
        "user_id": student_id,
        "role": "viewer",
        "display": student["user"]["display_name"],
    }
    assert {p["user_id"] for p in ready["participants"]} == {teacher_id, student_id}
    assert ready["recording"] == {"available": True, "active": False, "reason": ""}
    joined = await on_a.next("participant-joined")
    assert joined["participant"]["user_id"] == student_id
    assert not b.app[LIVE_ROOMS].rooms
    (room,) = a.app[LIVE_ROOMS].rooms.values()
    assert {str(u) for u in room.participants} == {teacher_id, student_id}
    assert len(b.app[RELAY].doors) == 1 and len(a.app[RELAY].hosted) == 1

    # attendance: written on A when she arrived
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT user_id FROM session_participants WHERE session_id = $1 AND left_at IS NULL",
            uuid.UUID(sid),
        )
    finally:
        await conn.close()
    assert {str(r["user_id"]) for r in rows} == {teacher_id, student_id}

    # a hand raised through B reaches the teacher on A, lowered by the teacher reaches her
    await via_b.send(type="hand", raised=True)
    hand = await on_a.next("hand", user_id=student_id)
    assert hand["raised"] is True and hand["at"]
    assert (await via_b.next("hand", user_id=student_id))["raised"] is True
    await on_a.send(type="lower-hand", user_id=student_id)
    assert (await via_b.next("hand", user_id=student_id))["raised"] is False

    # media state both ways
    await via_b.send(type="media", audio=True, video=False, screen=False)
    media = await on_a.next("media", user_id=student_id)
    assert (media["audio"], media["video"]) == (True, False)
    await on_a.send(type="media", audio=True, video=True, screen=False)
    assert (await via_b.next("media", user_id=teacher_id))["video"] is True

    # the teacher mutes her: she hears it through B; her unmute through B reaches A
    await on_a.send(type="mute", user_id=student_id)
    muted = await via_b.next("muted", user_id=student_id)
    assert muted["by"] == teacher["user"]["display_name"] and muted["kind"] == "audio"
    await via_b.send(type="unmute")
    assert (await on_a.next("unmuted", user_id=student_id))["kind"] == "audio"

    # a student's control is refused on A, the error relayed with its code
    await via_b.send(type="remove", user_id=teacher_id)
    assert (await via_b.next("error"))["error"]["code"] == "forbidden"
    await via_b.send(type="ping")
    await via_b.next("pong")

    # renewal through B: answered by A
    await via_b.send(type="auth", token=student["access_token"])
    assert (await via_b.next("authenticated"))["user_id"] == student_id

    # chat both ways: each posted through its author's node's API, delivered to both
    await ok(b, "POST", f"/api/v1/sessions/{sid}/chat", student, json={"body": "Why convex?"})
    await ok(a, "POST", f"/api/v1/sessions/{sid}/chat", teacher, json={"body": "It focuses."})
    for live in (on_a, via_b):
        first = await live.next("chat")
        second = await live.next("chat")
        assert [first["message"]["body"], second["message"]["body"]] == [
            "Why convex?",
            "It focuses.",
        ]
        assert first["message"]["author_name"] == student["user"]["display_name"]

    # recording (beside the room, on A): its state reaches her through B
    await on_a.send(type="record", action="start")
    assert (await via_b.next("recording"))["recording"]["active"] is True
    await on_a.send(type="record", action="stop")
    stopped = await via_b.next("recording")
    assert stopped["recording"]["active"] is False

    # removal by the teacher on A: she is told why and her socket on B closes (4403)
    await on_a.send(type="remove", user_id=student_id, reason="disruptive")
    removed = await via_b.next("removed")
    assert removed == {
        "type": "removed",
        "by": teacher["user"]["display_name"],
        "reason": "disruptive",
    }
    assert await via_b.closed() == 4403
    left = await on_a.next("participant-left", user_id=student_id)
    assert left["reason"] == "left"
    await until(lambda: not b.app[RELAY].doors and not a.app[RELAY].hosted, 5, "links over")
    assert {str(u) for u in room.participants} == {teacher_id}
    # ...and through B she is refused from then on (B checks it before relaying)
    again = await _open(b, sid, student)
    assert (await again.next("error"))["error"]["code"] == "removed"
    assert await again.closed() == 4403
    await on_a.ws.close()


async def test_closing_the_socket_on_b_ends_the_participant_on_a(make_class: MakeClass) -> None:
    a, b, teacher, student, session = await make_class()
    on_a = await _in_class(a, session["id"], teacher)
    via_b = await _in_class(b, session["id"], student)
    await via_b.ws.close()
    left = await on_a.next("participant-left", user_id=student["user"]["id"])
    assert left["reason"] == "left"
    await until(lambda: not b.app[RELAY].doors and not a.app[RELAY].hosted, 5, "links over")
    await on_a.ws.close()


async def test_the_session_ended_through_node_b_ends_the_channel_relayed_to_a(
    make_class: MakeClass,
) -> None:
    a, b, teacher, student, session = await make_class()
    via_b = await _in_class(b, session["id"], student)
    await ok(b, "POST", f"/api/v1/sessions/{session['id']}/end", teacher)
    assert (await via_b.next("ended"))["by"] == teacher["user"]["display_name"]
    assert await via_b.closed() == 1000
    await until(lambda: not b.app[RELAY].doors and not a.app[RELAY].hosted, 5, "links over")


async def test_when_node_a_dies_the_student_on_b_is_told_and_reconnects_to_b(
    make_class: MakeClass,
) -> None:
    a, b, _teacher, student, session = await make_class(**FAST_BEATS)
    via_b = await _in_class(b, session["id"], student)
    await die(a)
    # B sees A gone from the registry (two checks in a row): node_gone, then 1012
    error = await via_b.next("error", within=10)
    assert error["error"]["code"] == "node_gone", error
    assert await via_b.closed() == 1012
    assert not b.app[RELAY].doors
    # the client connects again (to B, its page's node): the class's room is placed
    # again, on B (the only node left), and the channel is served there
    again = await _open(b, session["id"], student)
    ready = await again.next("ready", within=10)
    assert [p["user_id"] for p in ready["participants"]] == [student["user"]["id"]]
    assert await b.app[PLACEMENT].owner(session["room_name"]) == "node-b"
    assert not b.app[RELAY].doors
    await again.ws.close()


async def test_when_node_b_dies_node_a_drops_its_participants(make_class: MakeClass) -> None:
    a, b, teacher, student, session = await make_class(**FAST_BEATS)
    on_a = await _in_class(a, session["id"], teacher)
    via_b = await _in_class(b, session["id"], student)
    started = time.monotonic()
    await die(b)
    # within the registry's TTL plus a heartbeat or two, A's side of the link ends
    left = await on_a.next("participant-left", within=10, user_id=student["user"]["id"])
    assert left["reason"] == "left"
    assert (
        time.monotonic() - started < FAST_BEATS["node_ttl_s"] + 4 * FAST_BEATS["node_heartbeat_s"]
    )
    assert not a.app[RELAY].hosted
    (room,) = a.app[LIVE_ROOMS].rooms.values()
    assert [str(u) for u in room.participants] == [teacher["user"]["id"]]
    await via_b.ws.close()
    await on_a.ws.close()


async def test_a_room_node_that_forgot_the_channel_makes_the_door_close_it(
    make_class: MakeClass,
) -> None:
    """(As after a restart of the room's node under the same id, quicker than the
    registry tells.) The student hears node_gone and is closed with 1012: she reconnects."""
    a, b, _teacher, student, session = await make_class()
    via_b = await _in_class(b, session["id"], student)
    a.app[RELAY].hosted.clear()
    await via_b.send(type="ping")
    assert (await via_b.next("error"))["error"]["code"] == "node_gone"
    assert await via_b.closed() == 1012
    assert not b.app[RELAY].doors
