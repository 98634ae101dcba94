"""Chat (course channel, session room chat, moderation) and recordings listings."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from domain_helpers import World
from helpers import assert_error
from test_sessions_api import schedule

from vtp.api.chat import CHAT_HOOKS


async def test_course_channel_history_pages_newest_first(world: World) -> None:
    url = f"/api/v1/courses/{world.course_id}/chat"
    for i in range(5):
        who = world.student if i % 2 else world.teacher
        await world.ok(who, "POST", url, {"body": f"message {i}"}, 201)
    seen: list[str] = []
    cursor = None
    while True:
        body = await world.ok(
            world.observer, "GET", url + "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        )
        seen += [m["body"] for m in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"message {i}" for i in reversed(range(5))]
    first = (await world.ok(world.ta, "GET", url + "?limit=1"))["items"][0]
    assert first["author_id"] == world.teacher.user_id and first["author_name"]


async def test_who_may_post_and_limits(world: World) -> None:
    url = f"/api/v1/courses/{world.course_id}/chat"
    status, body = await world.call(world.observer, "POST", url, {"body": "hi"})
    assert status == 403
    assert (await world.call(world.other, "POST", url, {"body": "hi"}))[0] == 404
    assert (await world.call(world.other, "GET", url))[0] == 404
    assert (await world.call(None, "GET", url))[0] == 401
    for bad in ("", "   ", "x" * 4001):
        status, body = await world.call(world.student, "POST", url, {"body": bad})
        assert status == 400, len(bad)
        assert assert_error(body, "validation_error")["details"][0]["field"] == "body"  # type: ignore[index]
    await world.ok(world.student, "POST", url, {"body": "x" * 4000}, 201)


async def test_edit_delete_and_moderation(world: World, db: asyncpg.Connection) -> None:
    url = f"/api/v1/courses/{world.course_id}/chat"
    msg = await world.ok(world.student, "POST", url, {"body": "helo"}, 201)
    path = f"/api/v1/chat/{msg['id']}"
    status, body = await world.call(world.teacher, "PATCH", path, {"body": "changed"})
    assert status == 403
    assert_error(body, "forbidden")
    edited = await world.ok(world.student, "PATCH", path, {"body": "hello"})
    assert edited["body"] == "hello" and edited["edited_at"] is not None
    other = await world.ok(world.teacher, "POST", url, {"body": "teacher says"}, 201)
    assert (await world.call(world.student, "DELETE", f"/api/v1/chat/{other['id']}"))[0] == 403
    assert (await world.call(world.other, "DELETE", path))[0] == 404
    # A TA moderates the student's message; it stays in the history without its body.
    await world.ok(world.ta, "DELETE", path, status=204)
    history = await world.ok(world.student, "GET", url)
    deleted = next(m for m in history["items"] if m["id"] == msg["id"])
    assert deleted["body"] is None and deleted["deleted_at"] is not None
    status, body = await world.call(world.student, "PATCH", path, {"body": "back"})
    assert status == 409
    assert_error(body, "message_deleted")
    await world.ok(world.teacher, "DELETE", f"/api/v1/chat/{other['id']}", status=204)
    assert await db.fetchval("SELECT count(*) FROM chats WHERE deleted_at IS NOT NULL") == 2


async def test_session_chat_is_separate_and_live_only(world: World) -> None:
    session = await schedule(world)
    url = f"/api/v1/sessions/{session['id']}/chat"
    status, body = await world.call(world.student, "POST", url, {"body": "early"})
    assert status == 409
    assert_error(body, "session_not_live")
    await world.ok(world.teacher, "POST", f"/api/v1/sessions/{session['id']}/start")
    await world.ok(world.student, "POST", url, {"body": "in the room"}, 201)
    assert (await world.call(world.observer, "POST", url, {"body": "x"}))[0] == 403
    assert (await world.call(world.other, "GET", url))[0] == 404
    room = await world.ok(world.observer, "GET", url)
    assert [m["body"] for m in room["items"]] == ["in the room"]
    channel = await world.ok(world.student, "GET", f"/api/v1/courses/{world.course_id}/chat")
    assert channel["items"] == []


async def test_chat_hooks_receive_committed_changes(
    aiohttp_client: Any, config: Any, accounts: Any, database_url: str
) -> None:
    from domain_helpers import make_world

    from vtp.app import create_app

    events: list[dict[str, Any]] = []

    async def hook(event: dict[str, Any]) -> None:
        events.append(event)

    async def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("subscriber gone")

    app = create_app(config)
    app[CHAT_HOOKS] = [broken, hook]  # what the signalling layer does at set-up
    client = await aiohttp_client(app)
    world = await make_world(client, type(accounts)(client, database_url))
    url = f"/api/v1/courses/{world.course_id}/chat"
    msg = await world.ok(world.student, "POST", url, {"body": "hi"}, 201)
    await world.ok(world.student, "PATCH", f"/api/v1/chat/{msg['id']}", {"body": "hi!"})
    await world.ok(world.student, "DELETE", f"/api/v1/chat/{msg['id']}", status=204)
    assert [e["type"] for e in events] == ["chat.created", "chat.edited", "chat.deleted"]
    assert events[1]["message"]["body"] == "hi!" and events[2]["message"]["body"] is None
    assert events[0]["course_id"] == world.course_id and events[0]["session_id"] is None


async def test_recordings_are_visible_to_members_only(world: World, db: asyncpg.Connection) -> None:
    session = await schedule(world)
    sid = uuid.UUID(session["id"])
    await db.execute(
        """INSERT INTO recordings (session_id, status, object_key, size_bytes)
           VALUES ($1, 'available', 'rec/a.webm', 1000), ($1, 'failed', NULL, NULL)""",
        sid,
    )
    url = f"/api/v1/courses/{world.course_id}/recordings"
    listed = await world.ok(world.student, "GET", url)
    assert sorted(r["status"] for r in listed["items"]) == ["available", "failed"]
    assert all("object_key" not in r for r in listed["items"])
    staff = await world.ok(world.ta, "GET", url + "?status=available")
    assert [r["object_key"] for r in staff["items"]] == ["rec/a.webm"]
    assert (await world.call(world.other, "GET", url))[0] == 404
    per_session = await world.ok(world.observer, "GET", f"/api/v1/sessions/{sid}/recordings")
    assert len(per_session["items"]) == 2
    rid = listed["items"][0]["id"]
    one = await world.ok(world.student, "GET", f"/api/v1/recordings/{rid}")
    assert one["session_title"] == "Lecture" and one["course_id"] == world.course_id
    assert (await world.call(world.other, "GET", f"/api/v1/recordings/{rid}"))[0] == 404
    assert (await world.call(world.student, "GET", f"/api/v1/recordings/{uuid.uuid4()}"))[0] == 404
    status, body = await world.call(world.student, "GET", url + "?status=lost")
    assert status == 400
    assert_error(body, "validation_error")


async def test_room_chat_from_signalling_follows_the_same_rules(world: World, client: Any) -> None:
    from vtp.api.chat import ChatRefused, post_in_room
    from vtp.auth.principal import Principal

    app = client.server.app
    session = await schedule(world)
    room = session["room_name"]

    def principal(who: Any, role: str = "student") -> Principal:
        return Principal(uuid.UUID(who.user_id), role, "t", "f", 0)  # type: ignore[arg-type]

    async def refused(who: Any, body: str, role: str = "student", room_name: str = room) -> str:
        try:
            await post_in_room(app, principal(who, role), room_name, body)
        except ChatRefused as exc:
            return exc.code
        raise AssertionError("the message was accepted")

    assert await refused(world.student, "early") == "session_not_live"
    await world.ok(world.teacher, "POST", f"/api/v1/sessions/{session['id']}/start")
    assert await refused(world.other, "hi") == "not_found"
    assert await refused(world.student, "hi", room_name="no-such-room") == "not_found"
    assert await refused(world.observer, "hi") == "forbidden"
    assert await refused(world.student, "   ") == "validation_error"
    assert await refused(world.student, "x" * 4001) == "validation_error"
    sent = await post_in_room(app, principal(world.student), room, "from the room")
    assert sent["session_id"] == session["id"] and sent["body"] == "from the room"
    await post_in_room(app, principal(world.admin, "admin"), room, "admin here")
    history = await world.ok(world.student, "GET", f"/api/v1/sessions/{session['id']}/chat")
    assert [m["body"] for m in history["items"]] == ["admin here", "from the room"]
