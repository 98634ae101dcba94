"""Live sessions: scheduling, the enforced state machine, join tickets, attendance."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from domain_helpers import World
from helpers import assert_error

from vtp.api import live_rooms
from vtp.db import attendance

START = datetime(2030, 1, 6, 9, 0, tzinfo=UTC)


def slot(hours: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "title": "Lecture",
        "scheduled_start": START.isoformat(),
        "scheduled_end": (START + timedelta(hours=hours)).isoformat(),
        **extra,
    }


async def schedule(world: World, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = await world.ok(
        world.teacher, "POST", f"/api/v1/courses/{world.course_id}/sessions", slot(**extra), 201
    )
    return body


async def test_schedule_rules_and_validation(world: World) -> None:
    path = f"/api/v1/courses/{world.course_id}/sessions"
    assert (await world.call(world.student, "POST", path, slot()))[0] == 403
    assert (await world.call(world.observer, "POST", path, slot()))[0] == 403
    assert (await world.call(world.other, "POST", path, slot()))[0] == 404
    created = await world.ok(world.ta, "POST", path, slot(auto_record=True), 201)
    assert created["status"] == "scheduled" and created["host_id"] == world.ta.user_id
    assert created["auto_record"] is True
    bad = slot()
    bad["scheduled_end"] = bad["scheduled_start"]
    status, body = await world.call(world.teacher, "POST", path, bad)
    assert status == 400
    assert_error(body, "validation_error")
    status, body = await world.call(world.teacher, "POST", path, slot(hours=25))
    assert status == 400
    naive = slot()
    naive["scheduled_start"] = "2030-01-06T09:00:00"
    status, body = await world.call(world.teacher, "POST", path, naive)
    assert status == 400
    assert assert_error(body, "validation_error")["details"][0]["field"] == "scheduled_start"  # type: ignore[index]
    status, body = await world.call(world.teacher, "POST", path, slot(lesson_id=str(uuid.uuid4())))
    assert status == 400
    assert assert_error(body, "validation_error")["details"] == [  # type: ignore[comparison-overlap]
        {"field": "lesson_id", "message": "no such lesson in this course"}
    ]


async def test_list_and_get_visibility(world: World) -> None:
    first = await schedule(world)
    await schedule(world, title="Second")
    path = f"/api/v1/courses/{world.course_id}/sessions"
    listed = await world.ok(world.student, "GET", path)
    assert [s["title"] for s in listed["items"]] == ["Lecture", "Second"]
    assert all("room_name" not in s for s in listed["items"])
    staff = await world.ok(world.ta, "GET", path + "?limit=1")
    assert len(staff["items"]) == 1 and "room_name" in staff["items"][0]
    rest = await world.ok(world.ta, "GET", path + f"?limit=1&cursor={staff['next_cursor']}")
    assert [s["title"] for s in rest["items"]] == ["Second"] and rest["next_cursor"] is None
    await world.ok(world.teacher, "POST", f"/api/v1/sessions/{first['id']}/start")
    live = await world.ok(world.observer, "GET", path + "?status=live")
    assert [s["id"] for s in live["items"]] == [first["id"]]
    status, body = await world.call(world.other, "GET", f"/api/v1/sessions/{first['id']}")
    assert status == 404
    assert_error(body, "not_found")
    assert (await world.call(world.other, "GET", path))[0] == 404
    status, _ = await world.call(world.student, "GET", f"/api/v1/sessions/{uuid.uuid4()}")
    assert status == 404
    status, body = await world.call(world.student, "GET", "/api/v1/sessions/not-a-uuid")
    assert status == 400
    assert_error(body, "validation_error")


async def test_state_machine_is_enforced(world: World) -> None:
    session = await schedule(world)
    base = f"/api/v1/sessions/{session['id']}"
    status, _ = await world.call(world.student, "POST", base + "/start")
    assert status == 403
    status, body = await world.call(world.teacher, "POST", base + "/end")
    assert status == 409
    assert assert_error(body, "invalid_transition")["details"] == {
        "from": "scheduled",
        "to": "ended",
    }
    live = await world.ok(world.teacher, "POST", base + "/start")
    assert live["status"] == "live" and live["started_at"] is not None
    for action in ("start", "cancel"):
        status, body = await world.call(world.teacher, "POST", f"{base}/{action}")
        assert status == 409, action
        assert_error(body, "invalid_transition")
    status, body = await world.call(world.teacher, "PATCH", base, {"title": "Renamed"})
    assert status == 409
    assert_error(body, "session_not_editable")
    # While live, the teacher may still open the floor to students.
    opened = await world.ok(world.teacher, "PATCH", base, {"students_may_publish": True})
    assert opened["students_may_publish"] is True and opened["status"] == "live"
    assert (await world.ok(world.student, "POST", base + "/join"))["may_publish"] is True
    ended = await world.ok(world.ta, "POST", base + "/end")
    assert ended["status"] == "ended" and ended["ended_at"] >= ended["started_at"]
    for action in ("start", "end", "cancel"):
        assert (await world.call(world.teacher, "POST", f"{base}/{action}"))[0] == 409
    status, _ = await world.call(world.teacher, "PATCH", base, {"students_may_publish": False})
    assert status == 409
    other = await schedule(world)
    cancelled = await world.ok(world.teacher, "POST", f"/api/v1/sessions/{other['id']}/cancel")
    assert cancelled["status"] == "cancelled"
    assert (await world.call(world.teacher, "POST", f"/api/v1/sessions/{other['id']}/start"))[
        0
    ] == 409


async def test_concurrent_starts_succeed_once(world: World) -> None:
    session = await schedule(world)
    path = f"/api/v1/sessions/{session['id']}/start"
    results = await asyncio.gather(*(world.call(world.teacher, "POST", path) for _ in range(4)))
    assert sorted(status for status, _ in results) == [200, 409, 409, 409]


async def test_edit_a_scheduled_session(world: World) -> None:
    session = await schedule(world)
    base = f"/api/v1/sessions/{session['id']}"
    edited = await world.ok(world.teacher, "PATCH", base, {"title": "Moved", "auto_record": True})
    assert edited["title"] == "Moved" and edited["auto_record"] is True
    later = (START - timedelta(hours=1)).isoformat()
    status, body = await world.call(world.teacher, "PATCH", base, {"scheduled_end": later})
    assert status == 400
    assert_error(body, "validation_error")
    assert (await world.call(world.student, "PATCH", base, {"title": "x"}))[0] == 403


async def test_join_tickets(world: World) -> None:
    session = await schedule(world)
    base = f"/api/v1/sessions/{session['id']}"
    status, body = await world.call(world.student, "POST", base + "/join")
    assert status == 409
    assert_error(body, "session_not_live")
    await world.ok(world.teacher, "POST", base + "/start")
    ticket = await world.ok(world.teacher, "POST", base + "/join")
    assert ticket == {
        "session_id": session["id"],
        "room_name": session["room_name"],
        "role": "presenter",
        "may_publish": True,
    }
    assert (await world.ok(world.ta, "POST", base + "/join"))["role"] == "presenter"
    viewer = await world.ok(world.student, "POST", base + "/join")
    assert viewer["role"] == "viewer" and viewer["may_publish"] is False
    assert (await world.call(world.other, "POST", base + "/join"))[0] == 404
    assert (await world.call(None, "POST", base + "/join"))[0] == 401
    # With students_may_publish on, students (not observers) may publish.
    open_session = await schedule(world, students_may_publish=True)
    await world.ok(world.teacher, "POST", f"/api/v1/sessions/{open_session['id']}/start")
    student = await world.ok(world.student, "POST", f"/api/v1/sessions/{open_session['id']}/join")
    assert student["role"] == "viewer" and student["may_publish"] is True
    observer = await world.ok(world.observer, "POST", f"/api/v1/sessions/{open_session['id']}/join")
    assert observer["may_publish"] is False


async def test_attendance_from_joins_and_leaves(world: World, db: asyncpg.Connection) -> None:
    session = await schedule(world)
    sid = uuid.UUID(session["id"])
    student = uuid.UUID(world.student.user_id)
    teacher = uuid.UUID(world.teacher.user_id)
    # Joins are refused before the session is live.
    assert await attendance.record_join(db, sid, student, "viewer") is None
    await world.ok(world.teacher, "POST", f"/api/v1/sessions/{sid}/start")
    t0 = datetime.now(UTC) - timedelta(hours=2)
    first = await attendance.record_join(db, sid, student, "viewer")
    second = await attendance.record_join(db, sid, student, "viewer")
    presenter = await attendance.record_join(db, sid, teacher, "presenter")
    assert first and second and presenter
    # Pin the intervals: t0+0..10 and t0+5..20 overlap (two tabs) -> 20 minutes.
    for row_id, joined, left in [(first, 0, 10), (second, 5, 20)]:
        await db.execute(
            "UPDATE session_participants SET joined_at = $2, left_at = $3 WHERE id = $1",
            row_id,
            t0 + timedelta(minutes=joined),
            t0 + timedelta(minutes=left),
        )
    assert await attendance.record_leave(db, sid, student) is False  # nothing open
    third = await attendance.record_join(db, sid, student, "viewer")
    assert third is not None
    await db.execute(
        "UPDATE session_participants SET joined_at = $2 WHERE id = $1",
        third,
        t0 + timedelta(minutes=30),
    )
    assert await attendance.record_leave(db, sid, student, third) is True
    await db.execute(
        "UPDATE session_participants SET left_at = $2 WHERE id = $1",
        third,
        t0 + timedelta(minutes=35),
    )
    # The teacher is still in the room; ending the session closes their row.
    await db.execute(
        "UPDATE session_participants SET joined_at = $2 WHERE id = $1",
        presenter,
        datetime.now(UTC) - timedelta(minutes=2),
    )
    await world.ok(world.teacher, "POST", f"/api/v1/sessions/{sid}/end")
    assert await db.fetchval("SELECT count(*) FROM session_participants WHERE left_at IS NULL") == 0
    assert (await world.call(world.student, "GET", f"/api/v1/sessions/{sid}/attendance"))[0] == 403
    report = await world.ok(world.ta, "GET", f"/api/v1/sessions/{sid}/attendance")
    lines = {line["user_id"]: line for line in report["items"]}
    assert lines[world.student.user_id]["joins"] == 3
    assert lines[world.student.user_id]["attended_seconds"] == 25 * 60
    assert lines[world.student.user_id]["present_now"] is False
    assert 110 <= lines[world.teacher.user_id]["attended_seconds"] <= 200
    assert lines[world.teacher.user_id]["course_role"] == "teacher"
    # Students who never came are listed as absent; observers and other courses are not.
    assert set(lines) == {world.student.user_id, world.teacher.user_id}
    resp = await world.client.get(
        f"/api/v1/sessions/{sid}/attendance.csv", headers=world.teacher.headers
    )
    assert resp.status == 200 and resp.content_type == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    by_user = {r["user_id"]: r for r in rows}
    assert by_user[world.student.user_id]["attended_seconds"] == "1500"
    assert by_user[world.student.user_id]["joins"] == "3"


async def test_absent_students_are_listed(world: World) -> None:
    session = await schedule(world)
    await world.ok(world.teacher, "POST", f"/api/v1/sessions/{session['id']}/start")
    report = await world.ok(world.teacher, "GET", f"/api/v1/sessions/{session['id']}/attendance")
    assert report["items"] == [
        {
            "user_id": world.student.user_id,
            "display_name": report["items"][0]["display_name"],
            "email": world.student.email,
            "course_role": "student",
            "joins": 0,
            "first_joined_at": None,
            "last_left_at": None,
            "attended_seconds": 0,
            "present_now": False,
            "talk_seconds": 0,
            "turns": 0,
            "hands_raised": 0,
            "chat_messages": 0,
        }
    ]


def test_merged_seconds_counts_overlaps_once() -> None:
    t = datetime(2030, 1, 1, tzinfo=UTC)
    m = timedelta(minutes=1)
    assert attendance.merged_seconds([]) == 0
    assert attendance.merged_seconds([(t, t + 10 * m), (t + 20 * m, t + 25 * m)]) == 900
    assert attendance.merged_seconds([(t + 5 * m, t + 8 * m), (t, t + 10 * m)]) == 600


async def test_live_rooms_open_and_close_through_the_sfu_api() -> None:
    from aiohttp import web

    from vtp.appkeys import SFU_KEY
    from vtp.config import load_config
    from vtp.sfu import Sfu

    app = web.Application()
    # Without an SFU the functions do nothing.
    await live_rooms.open_room(app, "r0")
    await live_rooms.close_room(app, "r0")
    sfu = Sfu(load_config(ice_addresses=["127.0.0.1"]))
    app[SFU_KEY] = sfu
    await live_rooms.open_room(app, "r1")
    room = sfu.get_room("r1")
    assert room is not None and not room.closed
    peers = [room.join(name) for name in ("a", "b")]
    await live_rooms.close_room(app, "r1")
    assert room.closed and all(peer.left for peer in peers)
    await live_rooms.close_room(app, "unknown")  # no room: nothing to do
    await sfu.close()


async def test_join_ticket_by_room_name_for_the_signalling_layer(
    world: World, db: asyncpg.Connection
) -> None:
    from vtp.db.sessions import join_ticket

    session = await schedule(world, students_may_publish=True)
    room = session["room_name"]

    async def ticket(who: Any, admin: bool = False) -> Any:
        return await join_ticket(db, user_id=uuid.UUID(who.user_id), is_admin=admin, room_name=room)

    assert await ticket(world.other) is None
    assert await ticket(world.outsider) is None
    assert await join_ticket(db, user_id=uuid.uuid4(), is_admin=False, room_name="nope") is None
    teacher = await ticket(world.teacher)
    assert teacher.role == "presenter" and teacher.status == "scheduled"
    assert str(teacher.session_id) == session["id"]
    student = await ticket(world.student)
    assert (student.role, student.may_publish) == ("viewer", True)
    observer = await ticket(world.observer)
    assert (observer.role, observer.may_publish) == ("viewer", False)
    admin = await ticket(world.admin, admin=True)
    assert admin.role == "presenter"
    # A dropped student loses the ticket.
    await world.ok(
        world.teacher,
        "DELETE",
        f"/api/v1/courses/{world.course_id}/enrollments/{world.student.user_id}",
        status=204,
    )
    assert await ticket(world.student) is None


async def test_start_and_end_open_and_close_the_real_sfu_room(world: World, client: Any) -> None:
    from vtp.appkeys import SFU_KEY

    sfu = client.server.app[SFU_KEY]  # (every app has its media plane)
    session = await schedule(world)
    room_name = session["room_name"]
    assert sfu.get_room(room_name) is None
    await world.ok(world.teacher, "POST", f"/api/v1/sessions/{session['id']}/start")
    room = sfu.get_room(room_name)
    assert room is not None and not room.closed
    await world.ok(world.teacher, "POST", f"/api/v1/sessions/{session['id']}/end")
    assert room.closed
