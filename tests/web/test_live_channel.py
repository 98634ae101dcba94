"""The classroom live channel (vtp/web/live.py) without a browser: authentication and
membership, hands, teacher-only controls, removal, chat delivery, attendance, end."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp import WSMsgType
from helpers import class_session, ok

from tests.support.waiting import eventually
from vtp.web.live import LIVE_ROOMS

pytestmark = pytest.mark.asyncio


class Channel:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, **msg: Any) -> None:
        await self.ws.send_json(msg)

    async def next(self, kind: str, within: float = 5) -> dict[str, Any]:
        """The next message of this type (others are skipped)."""
        deadline = time.monotonic() + within
        while True:
            msg = await self.ws.receive_json(timeout=max(0.01, deadline - time.monotonic()))
            if msg["type"] == kind:
                result: dict[str, Any] = msg
                return result


async def _open(client: Any, session_id: str, who: dict[str, Any]) -> Channel:
    ws = await client.ws_connect(f"/api/v1/sessions/{session_id}/live")
    await ws.send_json({"type": "auth", "token": who["access_token"]})
    return Channel(ws)


async def test_refusals_close_with_a_reason(client: Any, accounts: Any) -> None:
    teacher = await accounts.with_role("teacher")
    student = await accounts.with_role("student")
    outsider = await accounts.with_role("student")
    session = await class_session(client, teacher, [student], start=False)
    path = f"/api/v1/sessions/{session['id']}/live"
    # A bad token.
    ws = await client.ws_connect(path)
    await ws.send_json({"type": "auth", "token": "nope"})
    msg = await ws.receive_json()
    assert msg["type"] == "error" and msg["error"]["code"] == "token_invalid"
    await ws.receive()
    assert ws.close_code == 4401
    # Deeply nested JSON before authenticating: refused (the channel framework answers
    # what is wrong with the message, as the SFU signalling socket always did).
    ws = await client.ws_connect(path)
    await ws.send_str("[" * 3_000)  # deeper than Python's parser can recurse
    assert (await ws.receive_json())["error"]["code"] == "invalid_json"
    await ws.receive()
    assert ws.close_code == 4401
    # Something other than auth first.
    ws = await client.ws_connect(path)
    await ws.send_json({"type": "hand", "raised": True})
    assert (await ws.receive_json())["error"]["code"] == "not_authenticated"
    await ws.receive()
    assert ws.close_code == 4401
    # Not a member of the course: as if the session did not exist.
    channel = await _open(client, session["id"], outsider)
    assert (await channel.next("error"))["error"]["code"] == "not_found"
    await channel.ws.receive()
    assert channel.ws.close_code == 4403
    # A member, but the session is not live yet.
    channel = await _open(client, session["id"], student)
    assert (await channel.next("error"))["error"]["code"] == "session_not_live"
    await channel.ws.receive()
    assert channel.ws.close_code == 4409
    # Plain HTTP is refused.
    resp = await client.get(path)
    assert resp.status == 400


async def test_hands_media_mute_remove_chat_attendance_and_end(
    client: Any, accounts: Any, database_url: str
) -> None:
    teacher = await accounts.with_role("teacher")
    ada = await accounts.with_role("student")
    ben = await accounts.with_role("student")
    session = await class_session(client, teacher, [ada, ben])
    sid = session["id"]
    t = await _open(client, sid, teacher)
    ready = await t.next("ready")
    assert ready["you"]["role"] == "presenter"
    assert ready["recording"] == {"available": True, "active": False, "reason": ""}
    a = await _open(client, sid, ada)
    ready = await a.next("ready")
    assert {p["display"] for p in ready["participants"]} == {
        teacher["user"]["display_name"],
        ada["user"]["display_name"],
    }
    joined = await t.next("participant-joined")
    assert joined["participant"]["user_id"] == ada["user"]["id"]
    b = await _open(client, sid, ben)
    await b.next("ready")

    # A raised hand reaches everyone, with the time it went up.
    await a.send(type="hand", raised=True)
    hand = await t.next("hand")
    assert hand["user_id"] == ada["user"]["id"] and hand["raised"] and hand["at"]
    assert (await b.next("hand"))["raised"]
    # Media state is shown to the others.
    await a.send(type="media", audio=True, video=False, screen=False)
    media = await t.next("media")
    assert (media["audio"], media["video"]) == (True, False)
    # Students may not use the teacher's controls.
    for msg in (
        {"type": "mute", "user_id": ben["user"]["id"]},
        {"type": "remove", "user_id": ben["user"]["id"]},
        {"type": "lower-hand", "user_id": ada["user"]["id"]},
        {"type": "end"},
        {"type": "record", "action": "start"},
    ):
        await a.send(**msg)
        assert (await a.next("error"))["error"]["code"] == "forbidden", msg
    # The teacher lowers the hand, and mutes Ben: only Ben is told.
    await t.send(type="lower-hand", user_id=ada["user"]["id"])
    assert (await a.next("hand"))["raised"] is False
    await t.send(type="mute", user_id=ben["user"]["id"])
    assert (await b.next("muted"))["by"] == teacher["user"]["display_name"]
    # Recording (started through the API) is announced to everyone, students included.
    await ok(client, "POST", f"/api/v1/sessions/{sid}/recording/start", teacher)
    assert (await a.next("recording"))["recording"]["active"] is True
    assert (await t.next("recording"))["recording"]["active"] is True
    assert (await b.next("recording"))["recording"]["active"] is True
    await ok(client, "POST", f"/api/v1/sessions/{sid}/recording/stop", teacher)
    stopped = await b.next("recording")
    assert stopped["recording"]["active"] is False and stopped["reason"] == "stopped by staff"
    # ...and the same over this channel: start, a second start refused, stop.
    await t.send(type="record", action="start")
    assert (await b.next("recording"))["recording"]["active"] is True
    await t.send(type="record", action="start")
    assert (await t.next("error"))["error"]["code"] == "already_recording"
    await t.send(type="record", action="pause")
    assert (await t.next("error"))["error"]["code"] == "validation_error"
    await t.send(type="record", action="stop")
    assert (await a.next("recording"))["recording"]["active"] is False
    await t.send(type="record", action="stop")
    assert (await t.next("error"))["error"]["code"] == "not_recording"
    await t.send(type="remove", user_id=teacher["user"]["id"])
    assert (await t.next("error"))["error"]["code"] == "forbidden"

    # Chat posted through the API is delivered live, with the author's name.
    await ok(client, "POST", f"/api/v1/sessions/{sid}/chat", ada, json={"body": "Is pH 7 neutral?"})
    chat = await b.next("chat")
    assert chat["event"] == "created"
    assert chat["message"]["body"] == "Is pH 7 neutral?"
    assert chat["message"]["author_name"] == ada["user"]["display_name"]

    # Removal: Ben is told why, his channel closes, and he cannot come back.
    await t.send(type="remove", user_id=ben["user"]["id"], reason="Phones away, please")
    removed = await b.next("removed")
    assert removed["reason"] == "Phones away, please"
    await b.ws.receive()
    assert b.ws.close_code == 4403
    left = await t.next("participant-left")
    assert left["user_id"] == ben["user"]["id"]
    from vtp.web.live import is_removed

    assert await is_removed(client.app, uuid.UUID(sid), uuid.UUID(ben["user"]["id"]))
    assert not await is_removed(client.app, uuid.UUID(sid), uuid.UUID(ada["user"]["id"]))
    again = await _open(client, sid, ben)
    error = await again.next("error")
    assert error["error"]["code"] == "removed" and "Phones away" in error["error"]["message"]

    # "end" is only an announcement of an ended session.
    await t.send(type="end")
    assert (await t.next("error"))["error"]["code"] == "session_live"
    # Ending it through the API ends everyone's channel, the teacher's too.
    await ok(client, "POST", f"/api/v1/sessions/{sid}/end", teacher)

    async def ended(channel: Channel) -> None:
        assert (await channel.next("ended"))["by"] == teacher["user"]["display_name"]
        # the server's close frame says 1000 (the client's own close_code may say 1006
        # when the server has already let the connection go before the client's reply)
        msg = await channel.ws.receive()
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 1000, "session ended")

    await asyncio.gather(ended(a), ended(t))  # both read: each close is answered

    # Attendance rows: one per user's stay, all closed once the server has let everyone go.
    async def attendance() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)
        try:
            rows: list[asyncpg.Record] = await conn.fetch(
                "SELECT user_id, left_at FROM session_participants WHERE session_id = $1",
                uuid.UUID(sid),
            )
        finally:
            await conn.close()
        assert all(r["left_at"] is not None for r in rows), rows
        return rows

    rows = await eventually(attendance, 5, "every attendance row closed")
    assert {str(r["user_id"]) for r in rows} == {
        teacher["user"]["id"],
        ada["user"]["id"],
        ben["user"]["id"],
    }


async def test_two_tabs_count_once(client: Any, accounts: Any, database_url: str) -> None:
    teacher = await accounts.with_role("teacher")
    ada = await accounts.with_role("student")
    session = await class_session(client, teacher, [ada])
    t = await _open(client, session["id"], teacher)
    await t.next("ready")
    tab1 = await _open(client, session["id"], ada)
    await tab1.next("ready")
    tab2 = await _open(client, session["id"], ada)
    ready = await tab2.next("ready")
    assert len(ready["participants"]) == 2
    await t.next("participant-joined")
    await tab1.ws.close()
    # Once the server has let the first tab go, Ada is still there (her other tab): the
    # teacher's next message is her hand, not a leave.
    room = client.app[LIVE_ROOMS].rooms[uuid.UUID(session["id"])]
    ada_id = uuid.UUID(ada["user"]["id"])
    await eventually(lambda: len(room.participants[ada_id].connections) == 1, 5, "tab 1 gone")
    await tab2.send(type="hand", raised=True)
    assert (await t.ws.receive_json(timeout=5))["type"] == "hand"
    await tab2.ws.close()
    left = await t.next("participant-left")
    assert left["user_id"] == ada["user"]["id"]
    conn = await asyncpg.connect(database_url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM session_participants WHERE session_id = $1 AND user_id = $2",
            uuid.UUID(session["id"]),
            uuid.UUID(ada["user"]["id"]),
        )
    finally:
        await conn.close()
    assert count == 1


async def test_recording_unavailable_says_why(client: Any, accounts: Any) -> None:
    from vtp.appkeys import RECORDER

    teacher = await accounts.with_role("teacher")
    session = await class_session(client, teacher, [])
    client.app[RECORDER].spool_error = "spool /var/spool/vtp is not writable"
    t = await _open(client, session["id"], teacher)
    recording = (await t.next("ready"))["recording"]
    assert recording["available"] is False and recording["active"] is False
    assert recording["reason"] == (
        "Recording is not available: spool /var/spool/vtp is not writable."
    )


async def test_shutdown_closes_both_kinds_of_channel_with_1001(client: Any, accounts: Any) -> None:
    """The live channel and the SFU signalling socket are one channel implementation:
    the server's shutdown closes both the same way."""

    teacher = await accounts.with_role("teacher")
    session = await class_session(client, teacher, [])
    live = await _open(client, session["id"], teacher)
    await live.next("ready")
    sfu = await client.ws_connect("/api/v1/sfu/ws")
    await sfu.send_json({"type": "auth", "token": teacher["access_token"]})
    assert (await sfu.receive_json())["type"] == "authenticated"
    await client.app.shutdown()
    for name, ws in (("live", live.ws), ("sfu", sfu)):
        seen = []
        while (msg := await asyncio.wait_for(ws.receive(), 10)).type not in (
            WSMsgType.CLOSE,
            WSMsgType.CLOSED,
        ):
            seen.append(msg)
        # (the close frame's code: the client's own close_code may say 1006 when the
        # stopping server does not wait for the closing handshake)
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 1001, "server shutdown"), (
            name,
            seen,
        )
