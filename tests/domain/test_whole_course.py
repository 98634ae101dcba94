"""Issue 7's "done when": a teacher runs a whole course through the API."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import asyncpg
from domain_helpers import World, actor

from vtp.db import attendance


async def test_a_teacher_runs_a_whole_course(
    client: Any, accounts: Any, db: asyncpg.Connection
) -> None:
    teacher = actor("teacher", await accounts.with_role("teacher"))
    students = [actor(f"s{i}", await accounts.register()) for i in range(3)]
    w = World(client, teacher, teacher, teacher, teacher, teacher, teacher, teacher, {}, {})

    course = await w.ok(
        teacher,
        "POST",
        "/api/v1/courses",
        {"code": "BIO-1", "title": "Biology", "enrollment_code": "BIO-JOIN-2030"},
        201,
    )
    cid = course["id"]
    for s in students[:2]:  # two join with the code, the third is enrolled by the teacher
        await w.ok(s, "POST", "/api/v1/enrollments/join", {"enrollment_code": "BIO-JOIN-2030"}, 201)
    await w.ok(
        teacher, "POST", f"/api/v1/courses/{cid}/enrollments", {"email": students[2].email}, 201
    )
    roster = await w.ok(teacher, "GET", f"/api/v1/courses/{cid}/enrollments?role=student")
    assert len(roster["items"]) == 3

    lesson = await w.ok(
        teacher,
        "POST",
        f"/api/v1/courses/{cid}/lessons",
        {"title": "Cells", "content_md": "# Cells", "status": "published"},
        201,
    )
    session = await w.ok(
        teacher,
        "POST",
        f"/api/v1/courses/{cid}/sessions",
        {
            "title": "Cells, live",
            "lesson_id": lesson["id"],
            "scheduled_start": "2030-03-01T09:00:00Z",
            "scheduled_end": "2030-03-01T10:00:00Z",
            "auto_record": True,
        },
        201,
    )
    sid = session["id"]
    await w.ok(teacher, "POST", f"/api/v1/sessions/{sid}/start")
    for who in (teacher, students[0], students[1]):
        ticket = await w.ok(who, "POST", f"/api/v1/sessions/{sid}/join")
        role = ticket["role"]
        # What the signalling layer does when the peer enters the room:
        assert await attendance.record_join(db, uuid.UUID(sid), uuid.UUID(who.user_id), role)
    await w.ok(students[0], "POST", f"/api/v1/sessions/{sid}/chat", {"body": "Question!"}, 201)
    await attendance.record_leave(db, uuid.UUID(sid), uuid.UUID(students[1].user_id))
    await w.ok(teacher, "POST", f"/api/v1/sessions/{sid}/end")

    resp = await client.get(f"/api/v1/sessions/{sid}/attendance.csv", headers=teacher.headers)
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    lines = {r["email"]: r for r in rows}
    assert lines[students[0].email]["joins"] == "1"
    assert lines[students[2].email]["joins"] == "0"  # absent, still listed

    homework = await w.ok(
        teacher,
        "POST",
        f"/api/v1/courses/{cid}/assignments",
        {
            "title": "Draw a cell",
            "points_possible": 10,
            "status": "published",
            "allowed_file_types": ["png", "pdf"],
        },
        201,
    )
    aid = homework["id"]
    for i, s in enumerate(students):
        sub = await w.ok(
            s, "POST", f"/api/v1/assignments/{aid}/submissions", {"body_text": f"mine {i}"}, 201
        )
        up = await client.post(
            f"/api/v1/submissions/{sub['id']}/files",
            params={"filename": "cell.pdf"},
            data=b"%PDF-1.7\n%%EOF\n",
            headers=s.headers,
        )
        assert up.status == 201
        await w.ok(s, "POST", f"/api/v1/submissions/{sub['id']}/submit")
    subs = await w.ok(teacher, "GET", f"/api/v1/assignments/{aid}/submissions?status=submitted")
    assert len(subs["items"]) == 3
    await w.ok(
        teacher,
        "POST",
        f"/api/v1/assignments/{aid}/grades",
        {
            "grades": [
                {"submission_id": s["id"], "score": 7 + i, "feedback": "nice"}
                for i, s in enumerate(subs["items"])
            ],
            "return_to_students": True,
        },
    )
    mine = await w.ok(students[0], "GET", f"/api/v1/courses/{cid}/grades/me")
    assert mine["grades"][aid]["score"] in (7, 8, 9)

    resp = await client.get(f"/api/v1/courses/{cid}/gradebook.csv", headers=teacher.headers)
    assert resp.status == 200
    book = list(csv.reader(io.StringIO(await resp.text())))
    assert book[0][-2:] == ["Draw a cell (10)", "total (10)"]
    assert sorted(row[-1] for row in book[1:]) == ["7", "8", "9"]
    archived = await w.ok(teacher, "POST", f"/api/v1/courses/{cid}/archive")
    assert archived["status"] == "archived"
