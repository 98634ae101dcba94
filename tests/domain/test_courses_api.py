"""Courses and enrollments over the API, against a real PostgreSQL."""

from __future__ import annotations

from typing import Any

import asyncpg
from domain_helpers import World, make_course
from helpers import assert_error


async def test_only_teachers_and_admins_create_courses(world: World) -> None:
    status, body = await world.call(
        world.student, "POST", "/api/v1/courses", {"code": "X1", "title": "T"}
    )
    assert status == 403
    assert_error(body, "forbidden")
    created = await world.ok(
        world.admin, "POST", "/api/v1/courses", {"code": "ADM-1", "title": "T"}, status=201
    )
    assert created["my_role"] == "teacher" and created["owner_id"] == world.admin.user_id
    assert created["status"] == "active"


async def test_create_validates_and_refuses_duplicate_codes(world: World, db: Any) -> None:
    status, body = await world.call(
        world.teacher, "POST", "/api/v1/courses", {"code": "bad code!", "title": "", "x": 1}
    )
    assert status == 400
    fields = {d["field"] for d in assert_error(body, "validation_error")["details"]}  # type: ignore[union-attr]
    assert fields == {"code", "title", "x"}
    before = await db.fetchval("SELECT count(*) FROM courses")
    enrollments = await db.fetchval("SELECT count(*) FROM course_enrollments")
    status, body = await world.call(
        world.teacher, "POST", "/api/v1/courses", {"code": world.course["code"], "title": "T"}
    )
    assert status == 409
    assert_error(body, "course_code_taken")
    # The failed create left no course and no owner enrollment behind.
    assert await db.fetchval("SELECT count(*) FROM courses") == before
    assert await db.fetchval("SELECT count(*) FROM course_enrollments") == enrollments


async def test_enrollment_code_is_shown_to_staff_only(world: World) -> None:
    await world.ok(
        world.teacher,
        "PATCH",
        f"/api/v1/courses/{world.course_id}",
        {"enrollment_code": "JOIN-PHYS-1"},
    )
    for who in (world.teacher, world.ta, world.admin):
        body = await world.ok(who, "GET", f"/api/v1/courses/{world.course_id}")
        assert body["enrollment_code"] == "JOIN-PHYS-1", who.name
    for who in (world.student, world.observer, world.other):
        body = await world.ok(who, "GET", f"/api/v1/courses/{world.course_id}")
        assert "enrollment_code" not in body, who.name
    body = await world.ok(world.ta, "GET", f"/api/v1/courses/{world.course_id}")
    assert body["my_role"] == "ta"
    body = await world.ok(world.other, "GET", f"/api/v1/courses/{world.course_id}")
    assert body["my_role"] is None


async def test_draft_course_is_invisible_to_non_members(world: World) -> None:
    draft = await make_course(world.client, world.teacher, status="draft")
    status, body = await world.call(world.other, "GET", f"/api/v1/courses/{draft['id']}")
    assert status == 404
    assert_error(body, "not_found")
    await world.ok(world.teacher, "GET", f"/api/v1/courses/{draft['id']}")
    await world.ok(world.admin, "GET", f"/api/v1/courses/{draft['id']}")


async def test_update_and_archive_rules(world: World) -> None:
    path = f"/api/v1/courses/{world.course_id}"
    assert (await world.call(world.ta, "PATCH", path, {"title": "New"}))[0] == 403
    assert (await world.call(world.student, "PATCH", path, {"title": "New"}))[0] == 403
    assert (await world.call(world.other, "PATCH", path, {"title": "New"}))[0] == 404
    status, body = await world.call(world.teacher, "PATCH", path, {"title": None})
    assert status == 400
    assert_error(body, "validation_error")
    body = await world.ok(world.teacher, "PATCH", path, {"title": "Physics II"})
    assert body["title"] == "Physics II"
    body = await world.ok(world.teacher, "POST", path + "/archive")
    assert body["status"] == "archived"
    # Archived: read-only for enrolments, still readable by members.
    status, body = await world.call(
        world.teacher,
        "POST",
        path + "/enrollments",
        {"user_id": world.outsider.user_id},
    )
    assert status == 409
    assert_error(body, "course_archived")
    await world.ok(world.student, "GET", path)
    # Not in the catalogue any more, and invisible to non-members.
    assert (await world.call(world.other, "GET", path))[0] == 404
    body = await world.ok(world.teacher, "PATCH", path, {"status": "active"})
    assert body["status"] == "active"


async def test_list_scopes_filters_and_cursor_paging(world: World) -> None:
    for i in range(5):
        await make_course(world.client, world.teacher, title=f"Algebra {i}")
    await make_course(world.client, world.teacher, title="Hidden draft", status="draft")
    mine = await world.ok(world.teacher, "GET", "/api/v1/courses?limit=100")
    assert len(mine["items"]) == 7 and mine["next_cursor"] is None
    assert all(c["my_role"] == "teacher" for c in mine["items"])
    student_mine = await world.ok(world.student, "GET", "/api/v1/courses")
    assert [c["id"] for c in student_mine["items"]] == [world.course_id]
    catalogue = await world.ok(world.other, "GET", "/api/v1/courses?scope=catalogue&limit=100")
    titles = {c["title"] for c in catalogue["items"]}
    assert "Hidden draft" not in titles and "Physics 101" in titles
    assert all("enrollment_code" not in c for c in catalogue["items"])
    found = await world.ok(world.other, "GET", "/api/v1/courses?scope=catalogue&q=algebra")
    assert len(found["items"]) == 5
    # Walk the teacher's courses two at a time: stable order, no repeats, no gaps.
    seen: list[str] = []
    cursor = None
    while True:
        url = "/api/v1/courses?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = await world.ok(world.teacher, "GET", url)
        seen += [c["id"] for c in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [c["id"] for c in mine["items"]]
    assert (await world.call(world.teacher, "GET", "/api/v1/courses?scope=all"))[0] == 403
    everything = await world.ok(world.admin, "GET", "/api/v1/courses?scope=all&limit=100")
    assert len(everything["items"]) == 8


async def test_bad_query_parameters_name_the_field(world: World) -> None:
    for query, field in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("scope=everything", "scope"),
        ("cursor=!!!", "cursor"),
        ("sort=title", "sort"),
        ("limit=1&limit=2", "limit"),
    ]:
        status, body = await world.call(world.teacher, "GET", f"/api/v1/courses?{query}")
        assert status == 400, query
        error = assert_error(body, "validation_error")
        assert [d["field"] for d in error["details"]] == [field], query  # type: ignore[union-attr]


async def test_self_enrolment_with_code(world: World, db: asyncpg.Connection) -> None:
    body = await world.ok(
        world.teacher, "POST", f"/api/v1/courses/{world.course_id}/enrollment-code"
    )
    code = body["enrollment_code"]
    status, err = await world.call(
        world.outsider, "POST", "/api/v1/enrollments/join", {"enrollment_code": "nope-nope"}
    )
    assert status == 404
    assert_error(err, "not_found")
    joined = await world.ok(
        world.outsider, "POST", "/api/v1/enrollments/join", {"enrollment_code": code}, 201
    )
    assert joined["enrollment"]["role"] == "student"
    assert joined["course"]["id"] == world.course_id
    status, err = await world.call(
        world.outsider, "POST", "/api/v1/enrollments/join", {"enrollment_code": code}
    )
    assert status == 409
    assert_error(err, "already_enrolled")
    # Unenrol oneself, then come back: the same row is re-activated.
    await world.ok(
        world.outsider,
        "DELETE",
        f"/api/v1/courses/{world.course_id}/enrollments/{world.outsider.user_id}",
        status=204,
    )
    roster = f"/api/v1/courses/{world.course_id}/enrollments"
    assert (await world.call(world.outsider, "GET", roster))[0] == 404
    await world.ok(
        world.outsider, "POST", "/api/v1/enrollments/join", {"enrollment_code": code}, 201
    )
    rows = await db.fetch(
        "SELECT status FROM course_enrollments WHERE user_id = $1::uuid", world.outsider.user_id
    )
    assert [r["status"] for r in rows] == ["active"]
    # A regenerated code replaces the old one.
    await world.ok(world.teacher, "POST", f"/api/v1/courses/{world.course_id}/enrollment-code")
    status, _ = await world.call(
        world.other, "POST", "/api/v1/enrollments/join", {"enrollment_code": code}
    )
    assert status == 404


async def test_removed_student_rejoining_with_the_code_waits_for_the_teacher(
    world: World, db: asyncpg.Connection
) -> None:
    code = (
        await world.ok(world.teacher, "POST", f"/api/v1/courses/{world.course_id}/enrollment-code")
    )["enrollment_code"]
    base = f"/api/v1/courses/{world.course_id}/enrollments"
    me = f"{base}/{world.student.user_id}"
    join = {"enrollment_code": code}

    async def status() -> str:
        value = await db.fetchval(
            "SELECT status FROM course_enrollments WHERE course_id = $1::uuid"
            " AND user_id = $2::uuid",
            world.course_id,
            world.student.user_id,
        )
        return str(value)

    # The teacher removes the student; the old code does not bring them back...
    await world.ok(world.teacher, "DELETE", me, status=204)
    assert await status() == "removed"
    asked = await world.ok(world.student, "POST", "/api/v1/enrollments/join", join, 202)
    assert asked["enrollment"]["status"] == "requested" and asked["course"]["my_role"] is None
    assert await status() == "requested"
    again = await world.ok(world.student, "POST", "/api/v1/enrollments/join", join, 202)
    assert again["enrollment"]["status"] == "requested"
    # ...it gives no access at all...
    assert (await world.call(world.student, "GET", base))[0] == 404
    course = await world.ok(world.student, "GET", f"/api/v1/courses/{world.course_id}")
    assert course["my_role"] is None
    # ...and the teacher sees the request, and declines it...
    pending = await world.ok(world.teacher, "GET", base + "?status=requested")
    assert [e["user_id"] for e in pending["items"]] == [world.student.user_id]
    await world.ok(world.teacher, "DELETE", me, status=204)
    assert await status() == "removed"
    # ...or approves it (enrolling the user again).
    await world.ok(world.student, "POST", "/api/v1/enrollments/join", join, 202)
    await world.ok(world.teacher, "POST", base, {"user_id": world.student.user_id}, 201)
    assert await status() == "active"
    await world.ok(world.student, "GET", base)
    # Leaving by oneself is different: the code brings one back at once.
    await world.ok(world.student, "DELETE", me, status=204)
    assert await status() == "dropped"
    await world.ok(world.student, "POST", "/api/v1/enrollments/join", join, 201)
    assert await status() == "active"


async def test_join_refuses_a_course_that_is_not_open(world: World) -> None:
    draft = await make_course(
        world.client, world.teacher, status="draft", enrollment_code="DRAFT-CODE"
    )
    status, body = await world.call(
        world.outsider, "POST", "/api/v1/enrollments/join", {"enrollment_code": "DRAFT-CODE"}
    )
    assert status == 409, draft
    assert_error(body, "course_not_open")


async def test_teacher_enrols_changes_role_and_unenrols(world: World) -> None:
    base = f"/api/v1/courses/{world.course_id}/enrollments"
    status, body = await world.call(world.teacher, "POST", base, {"email": "nobody@example.org"})
    assert status == 422
    assert_error(body, "unknown_user")
    status, body = await world.call(world.teacher, "POST", base, {})
    assert status == 400
    assert_error(body, "validation_error")
    status, _ = await world.call(world.ta, "POST", base, {"email": world.outsider.email})
    assert status == 403
    created = await world.ok(
        world.teacher, "POST", base, {"email": world.outsider.email.upper(), "role": "ta"}, 201
    )
    assert created["role"] == "ta" and created["user_id"] == world.outsider.user_id
    status, body = await world.call(world.teacher, "POST", base, {"user_id": world.student.user_id})
    assert status == 409
    assert_error(body, "already_enrolled")
    changed = await world.ok(
        world.teacher, "PATCH", f"{base}/{world.outsider.user_id}", {"role": "observer"}
    )
    assert changed["role"] == "observer"
    status, body = await world.call(
        world.teacher, "PATCH", f"{base}/{world.teacher.user_id}", {"role": "student"}
    )
    assert status == 409
    assert_error(body, "course_owner")
    # A student cannot drop someone else; the owner cannot be dropped.
    status, _ = await world.call(world.student, "DELETE", f"{base}/{world.ta.user_id}")
    assert status == 403
    status, body = await world.call(world.teacher, "DELETE", f"{base}/{world.teacher.user_id}")
    assert status == 409
    await world.ok(world.teacher, "DELETE", f"{base}/{world.outsider.user_id}", status=204)
    status, _ = await world.call(world.teacher, "DELETE", f"{base}/{world.outsider.user_id}")
    assert status == 404


async def test_roster_filters_and_privacy(world: World) -> None:
    base = f"/api/v1/courses/{world.course_id}/enrollments"
    staff_view = await world.ok(world.ta, "GET", base)
    roles = [e["role"] for e in staff_view["items"]]
    assert roles == ["teacher", "ta", "student", "observer"]
    assert all("email" in e["user"] for e in staff_view["items"])
    student_view = await world.ok(world.student, "GET", base + "?role=student")
    assert [e["user_id"] for e in student_view["items"]] == [world.student.user_id]
    assert all("email" not in e["user"] for e in student_view["items"])
    status, _ = await world.call(world.student, "GET", base + "?status=dropped")
    assert status == 403
    status, _ = await world.call(world.other, "GET", base)
    assert status == 404
    status, body = await world.call(world.ta, "GET", base + "?role=boss")
    assert status == 400
    assert_error(body, "validation_error")


async def test_guessing_enrollment_codes_is_rate_limited(world: World) -> None:
    await world.ok(
        world.teacher,
        "PATCH",
        f"/api/v1/courses/{world.course_id}",
        {"enrollment_code": "REAL-CODE-1"},
    )
    for i in range(10):
        status, _ = await world.call(
            world.outsider, "POST", "/api/v1/enrollments/join", {"enrollment_code": f"GUESS-{i}"}
        )
        assert status == 404
    status, body = await world.call(
        world.outsider, "POST", "/api/v1/enrollments/join", {"enrollment_code": "REAL-CODE-1"}
    )
    assert status == 429
    assert assert_error(body, "rate_limited")["details"]["retry_after_s"] > 0  # type: ignore[index]
    # Another user is not affected, and right codes do not count.
    await world.ok(
        world.other, "POST", "/api/v1/enrollments/join", {"enrollment_code": "REAL-CODE-1"}, 201
    )
