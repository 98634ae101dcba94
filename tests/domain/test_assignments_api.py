"""Assignments: staff create and edit them; students see only the published ones."""

from __future__ import annotations

import uuid
from typing import Any

from domain_helpers import World
from helpers import assert_error


async def make_assignment(world: World, **fields: Any) -> dict[str, Any]:
    body = {"title": "Homework", "status": "published", **fields}
    result: dict[str, Any] = await world.ok(
        world.teacher, "POST", f"/api/v1/courses/{world.course_id}/assignments", body, 201
    )
    return result


async def test_create_with_every_field(world: World) -> None:
    created = await world.ok(
        world.ta,
        "POST",
        f"/api/v1/courses/{world.course_id}/assignments",
        {
            "title": "Lab report",
            "instructions_md": "# Do it",
            "points_possible": 20.5,
            "unlock_at": "2030-01-01T00:00:00Z",
            "due_at": "2030-01-08T00:00:00Z",
            "lock_at": "2030-01-10T00:00:00Z",
            "allowed_attempts": 2,
            "allowed_file_types": ["pdf", "docx"],
            "max_file_bytes": 1000,
        },
        201,
    )
    assert created["points_possible"] == 20.5
    assert created["status"] == "draft"
    assert created["allowed_file_types"] == ["pdf", "docx"]
    assert created["created_by"] == world.ta.user_id


async def test_create_validation(world: World) -> None:
    path = f"/api/v1/courses/{world.course_id}/assignments"
    cases = [
        ({"title": ""}, "title"),
        ({"title": "x", "points_possible": -1}, "points_possible"),
        ({"title": "x", "points_possible": 1.234}, "points_possible"),
        ({"title": "x", "allowed_attempts": 0}, "allowed_attempts"),
        ({"title": "x", "allowed_file_types": [".PDF"]}, "allowed_file_types.0"),
        ({"title": "x", "max_file_bytes": 10**12}, "max_file_bytes"),
        (
            {"title": "x", "due_at": "2030-01-08T00:00:00Z", "lock_at": "2030-01-01T00:00:00Z"},
            "(body)",
        ),
        ({"title": "x", "allowed_file_types": ["exe"]}, "(body)"),
        ({"title": "x", "lesson_id": str(uuid.uuid4())}, "lesson_id"),
    ]
    for body, field in cases:
        status, err = await world.call(world.teacher, "POST", path, body)
        assert status == 400, body
        details = assert_error(err, "validation_error")["details"]
        assert [d["field"] for d in details] == [field], (body, details)  # type: ignore[union-attr]


async def test_drafts_are_hidden_from_students(world: World) -> None:
    draft = await make_assignment(world, status="draft", title="Draft")
    published = await make_assignment(world, title="Published")
    path = f"/api/v1/courses/{world.course_id}/assignments"
    staff = await world.ok(world.ta, "GET", path)
    assert [a["title"] for a in staff["items"]] == ["Draft", "Published"]
    for who in (world.student, world.observer):
        seen = await world.ok(who, "GET", path)
        assert [a["title"] for a in seen["items"]] == ["Published"], who.name
        assert (await world.ok(who, "GET", path + "?status=draft"))["items"] == []
        status, body = await world.call(who, "GET", f"/api/v1/assignments/{draft['id']}")
        assert status == 404, who.name
        assert_error(body, "not_found")
        await world.ok(who, "GET", f"/api/v1/assignments/{published['id']}")
    assert (await world.call(world.other, "GET", f"/api/v1/assignments/{published['id']}"))[
        0
    ] == 404
    only_drafts = await world.ok(world.teacher, "GET", path + "?status=draft")
    assert [a["id"] for a in only_drafts["items"]] == [draft["id"]]


async def test_update_and_delete(world: World) -> None:
    assignment = await make_assignment(world, due_at="2030-01-08T00:00:00Z")
    path = f"/api/v1/assignments/{assignment['id']}"
    assert (await world.call(world.student, "PATCH", path, {"title": "x"}))[0] == 403
    updated = await world.ok(world.ta, "PATCH", path, {"title": "Renamed", "points_possible": 50})
    assert updated["title"] == "Renamed" and updated["points_possible"] == 50
    status, body = await world.call(
        world.teacher, "PATCH", path, {"lock_at": "2030-01-01T00:00:00Z"}
    )
    assert status == 400
    assert_error(body, "validation_error")
    status, body = await world.call(world.teacher, "PATCH", path, {"title": None})
    assert status == 400
    # With a submission it cannot be deleted; without, it can.
    await world.ok(
        world.student,
        "POST",
        f"/api/v1/assignments/{assignment['id']}/submissions",
        {"body_text": "hi"},
        201,
    )
    status, body = await world.call(world.teacher, "DELETE", path)
    assert status == 409
    assert_error(body, "has_submissions")
    other = await make_assignment(world)
    assert (await world.call(world.student, "DELETE", f"/api/v1/assignments/{other['id']}"))[
        0
    ] == 403
    await world.ok(world.teacher, "DELETE", f"/api/v1/assignments/{other['id']}", status=204)
    assert (await world.call(world.teacher, "GET", f"/api/v1/assignments/{other['id']}"))[0] == 404
