"""Who may enter a course live session's SFU room (vtp.signalling.access.room_access)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from domain_helpers import World
from helpers import bearer

from vtp.app import create_app
from vtp.appkeys import CONFIG
from vtp.auth.principal import Principal
from vtp.signalling.access import RoomGrant, may_read_room_state, room_access


def principal(actor: Any, role: str) -> Principal:
    import uuid

    return Principal(uuid.UUID(actor.user_id), role, "jti", "fam", 0)  # type: ignore[arg-type]


async def _session(world: World) -> dict[str, Any]:
    start = datetime.now(UTC) + timedelta(minutes=5)
    return await world.ok(  # type: ignore[no-any-return]
        world.teacher,
        "POST",
        f"/api/v1/courses/{world.course_id}/sessions",
        {
            "title": "Live",
            "scheduled_start": start.isoformat(),
            "scheduled_end": (start + timedelta(hours=1)).isoformat(),
        },
        status=201,
    )


async def test_session_rooms_admit_course_members_while_live(world: World) -> None:
    app = world.client.server.app
    session = await _session(world)
    room = session["room_name"]
    cast = {
        "teacher": principal(world.teacher, "teacher"),
        "ta": principal(world.ta, "student"),
        "student": principal(world.student, "student"),
        "observer": principal(world.observer, "student"),
        "other": principal(world.other, "student"),
        "outsider": principal(world.outsider, "student"),
        "admin": principal(world.admin, "admin"),
    }
    # Scheduled: nobody enters yet.
    for who in cast.values():
        assert await room_access(app, who, room) is None

    await world.ok(world.teacher, "POST", f"/api/v1/sessions/{session['id']}/start")
    grants = {name: await room_access(app, who, room) for name, who in cast.items()}
    assert grants["teacher"] == RoomGrant(role="presenter", may_publish=True)
    assert grants["ta"] == RoomGrant(role="presenter", may_publish=True)
    assert grants["admin"] == RoomGrant(role="presenter", may_publish=True)
    assert grants["observer"] == RoomGrant(role="viewer", may_publish=False)
    assert grants["student"] is not None and grants["student"].role == "viewer"
    # A site-wide teacher role or being a student elsewhere opens no other course's room.
    assert grants["other"] is None
    assert grants["outsider"] is None
    # Its state: the course's teachers and TAs and admins without being in the room;
    # students only from inside; a site teacher of another course never.
    site_teacher = principal(world.outsider, "teacher")
    for name, who, allowed in (
        ("teacher", cast["teacher"], True),
        ("ta", cast["ta"], True),
        ("admin", cast["admin"], True),
        ("student", cast["student"], False),
        ("observer", cast["observer"], False),
        ("site teacher", site_teacher, False),
    ):
        assert await may_read_room_state(app, who, room, is_member=False) is allowed, name
    assert await may_read_room_state(app, cast["student"], room, is_member=True)
    student_ws = await world.client.ws_connect(
        "/api/v1/sfu/ws", headers=bearer(world.student.token)
    )
    await student_ws.send_json({"type": "join", "room": room})
    reply = await student_ws.receive_json(timeout=10)
    while reply["type"] not in ("joined", "error"):
        reply = await student_ws.receive_json(timeout=10)
    assert reply["type"] == "joined", reply
    for actor, status in ((world.ta, 200), (world.student, 200), (world.other, 403)):
        resp = await world.client.get(f"/api/v1/sfu/rooms/{room}", headers=bearer(actor.token))
        assert resp.status == status, (actor, await resp.text())
    await student_ws.close()

    # A student the teacher removed from the class cannot walk back into its room.
    import uuid

    from vtp.appkeys import REDIS
    from vtp.auth import removals

    await removals.mark(
        app[REDIS], uuid.UUID(session["id"]), uuid.UUID(world.student.user_id), "disruptive"
    )
    assert await room_access(app, cast["student"], room) is None
    assert await room_access(app, cast["teacher"], room) is not None
    # another VTP process sharing the Redis (or this one restarted) keeps them out too
    other = create_app(app[CONFIG])
    runner = web.AppRunner(other)
    await runner.setup()
    try:
        assert await room_access(other, cast["student"], room) is None
        assert await room_access(other, cast["teacher"], room) is not None
    finally:
        await runner.cleanup()

    await world.ok(world.teacher, "POST", f"/api/v1/sessions/{session['id']}/end")
    assert await room_access(app, cast["student"], room) is None
    assert await room_access(app, cast["teacher"], room) is None


async def test_outsider_is_refused_over_the_signalling_websocket(world: World) -> None:
    session = await _session(world)
    await world.ok(world.teacher, "POST", f"/api/v1/sessions/{session['id']}/start")
    for actor, allowed in ((world.outsider, False), (world.student, True)):
        async with world.client.ws_connect("/api/v1/sfu/ws", headers=bearer(actor.token)) as ws:
            await ws.send_json({"type": "join", "room": session["room_name"]})
            reply = await ws.receive_json(timeout=10)
            while reply["type"] not in ("joined", "error"):  # e.g. "authenticated" first
                reply = await ws.receive_json(timeout=10)
            if allowed:
                assert reply["type"] == "joined", reply
            else:
                assert reply["type"] == "error", reply
                assert reply["error"]["code"] == "forbidden"


@pytest.mark.parametrize("open_rooms", [True, False])
async def test_open_rooms_setting(aiohttp_client: Any, config: Any, open_rooms: bool) -> None:
    import uuid

    from vtp.app import create_app

    client = await aiohttp_client(
        create_app(config.model_copy(update={"sfu_open_rooms": open_rooms}))
    )
    student = Principal(uuid.uuid4(), "student", "jti", "fam", 0)
    grant = await room_access(client.server.app, student, "ad-hoc-room")
    assert (grant is not None) is open_rooms


def test_open_rooms_are_off_unless_an_operator_opts_in() -> None:
    from vtp.config import load_config

    assert load_config().sfu_open_rooms is False
