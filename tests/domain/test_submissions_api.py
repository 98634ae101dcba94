"""Submissions, files, grading and the gradebook, against PostgreSQL and the local store."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import asyncpg
from domain_helpers import World
from helpers import assert_error
from test_assignments_api import make_assignment

PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


async def start(world: World, assignment: dict[str, Any], **body: Any) -> dict[str, Any]:
    result: dict[str, Any] = await world.ok(
        world.student,
        "POST",
        f"/api/v1/assignments/{assignment['id']}/submissions",
        body or {"body_text": "my answer"},
        201,
    )
    return result


async def upload(world: World, sub_id: str, name: str, data: bytes) -> tuple[int, Any]:
    resp = await world.client.post(
        f"/api/v1/submissions/{sub_id}/files",
        params={"filename": name},
        data=data,
        headers={**world.student.headers, "Content-Type": "application/octet-stream"},
    )
    return resp.status, await resp.json()


async def test_draft_edit_submit_and_attempts(world: World) -> None:
    assignment = await make_assignment(world, allowed_attempts=2)
    sub = await start(world, assignment)
    assert sub["status"] == "draft" and sub["attempt"] == 1
    status, body = await world.call(
        world.student, "POST", f"/api/v1/assignments/{assignment['id']}/submissions", {}
    )
    assert status == 409
    assert assert_error(body, "draft_exists")["details"] == {"submission_id": sub["id"]}
    edited = await world.ok(
        world.student, "PATCH", f"/api/v1/submissions/{sub['id']}", {"body_text": "better"}
    )
    assert edited["body_text"] == "better"
    submitted = await world.ok(world.student, "POST", f"/api/v1/submissions/{sub['id']}/submit")
    assert submitted["status"] == "submitted" and submitted["submitted_at"]
    assert submitted["is_late"] is False
    status, body = await world.call(
        world.student, "PATCH", f"/api/v1/submissions/{sub['id']}", {"body_text": "late edit"}
    )
    assert status == 409
    assert_error(body, "submission_not_draft")
    second = await start(world, assignment, body_text="again", submit=True)
    assert second["attempt"] == 2 and second["status"] == "submitted"
    status, body = await world.call(
        world.student, "POST", f"/api/v1/assignments/{assignment['id']}/submissions", {}
    )
    assert status == 409
    assert_error(body, "attempts_exhausted")


async def test_concurrent_attempts_get_distinct_numbers(world: World) -> None:
    assignment = await make_assignment(world)
    path = f"/api/v1/assignments/{assignment['id']}/submissions"
    results = await asyncio.gather(
        *(
            world.call(world.student, "POST", path, {"body_text": "x", "submit": True})
            for _ in range(4)
        )
    )
    assert [s for s, _ in results] == [201] * 4
    assert sorted(b["attempt"] for _, b in results) == [1, 2, 3, 4]


async def test_who_may_submit(world: World) -> None:
    assignment = await make_assignment(world)
    path = f"/api/v1/assignments/{assignment['id']}/submissions"
    for who in (world.teacher, world.ta, world.observer):
        status, body = await world.call(who, "POST", path, {})
        assert status == 403, who.name
        assert_error(body, "forbidden")
    assert (await world.call(world.other, "POST", path, {}))[0] == 404
    draft = await make_assignment(world, status="draft")
    status, _ = await world.call(
        world.student, "POST", f"/api/v1/assignments/{draft['id']}/submissions", {}
    )
    assert status == 404
    status, body = await world.call(world.student, "POST", path, {"submit": True})
    assert status == 422
    assert_error(body, "empty_submission")


async def test_late_flag_lock_and_unlock(world: World, db: asyncpg.Connection) -> None:
    late = await make_assignment(
        world, due_at="2020-01-01T00:00:00Z", lock_at="2099-01-01T00:00:00Z"
    )
    sub = await start(world, late, body_text="sorry", submit=True)
    assert sub["is_late"] is True
    locked = await make_assignment(world, lock_at="2020-01-01T00:00:00Z")
    status, body = await world.call(
        world.student, "POST", f"/api/v1/assignments/{locked['id']}/submissions", {}
    )
    assert status == 409
    assert_error(body, "assignment_locked")
    future = await make_assignment(world, unlock_at="2099-01-01T00:00:00Z")
    status, body = await world.call(
        world.student, "POST", f"/api/v1/assignments/{future['id']}/submissions", {}
    )
    assert status == 409
    assert_error(body, "assignment_not_open")
    # A draft started before the lock cannot be handed in after it.
    closing = await make_assignment(world)
    draft = await start(world, closing)
    await world.ok(
        world.teacher,
        "PATCH",
        f"/api/v1/assignments/{closing['id']}",
        {"lock_at": "2020-01-01T00:00:00Z"},
    )
    status, body = await world.call(
        world.student, "POST", f"/api/v1/submissions/{draft['id']}/submit"
    )
    assert status == 409
    assert_error(body, "assignment_locked")
    assert (
        await db.fetchval("SELECT status FROM submissions WHERE id = $1::uuid", draft["id"])
        == "draft"
    )


async def test_students_see_only_their_own(world: World, accounts: Any) -> None:
    assignment = await make_assignment(world)
    mine = await start(world, assignment, body_text="mine", submit=True)
    classmate = await accounts.register()
    await world.ok(
        world.teacher,
        "POST",
        f"/api/v1/courses/{world.course_id}/enrollments",
        {"user_id": classmate["user"]["id"]},
        201,
    )
    theirs = await world.client.post(
        f"/api/v1/assignments/{assignment['id']}/submissions",
        json={"body_text": "theirs", "submit": True},
        headers={"Authorization": f"Bearer {classmate['access_token']}"},
    )
    assert theirs.status == 201
    theirs_body = await theirs.json()
    path = f"/api/v1/assignments/{assignment['id']}/submissions"
    own = await world.ok(world.student, "GET", path)
    assert [s["id"] for s in own["items"]] == [mine["id"]]
    status, _ = await world.call(
        world.student, "GET", path + f"?student_id={theirs_body['student_id']}"
    )
    assert status == 403
    status, _ = await world.call(world.student, "GET", f"/api/v1/submissions/{theirs_body['id']}")
    assert status == 404
    everyone = await world.ok(world.ta, "GET", path)
    assert {s["id"] for s in everyone["items"]} == {mine["id"], theirs_body["id"]}
    filtered = await world.ok(world.ta, "GET", path + f"?student_id={world.student.user_id}")
    assert [s["id"] for s in filtered["items"]] == [mine["id"]]
    assert (await world.call(world.observer, "GET", path))[0] == 403


async def test_files_are_checked_stored_and_cleaned_up(
    world: World, db: asyncpg.Connection
) -> None:
    assignment = await make_assignment(world, allowed_file_types=["pdf", "png"], max_file_bytes=200)
    sub = await start(world, assignment)
    status, meta = await upload(world, sub["id"], "essay.pdf", PDF)
    assert status == 201, meta
    assert meta["content_type"] == "application/pdf" and meta["size"] == len(PDF)
    assert "key" not in meta
    status, body = await upload(world, sub["id"], "essay.docx", PDF)
    assert status == 415
    assert_error(body, "file_type_not_allowed")
    status, body = await upload(world, sub["id"], "fake.pdf", b"MZ\x90\x00 not a pdf \xff\xfe")
    assert status == 415
    assert_error(body, "file_content_mismatch")
    status, body = await upload(world, sub["id"], "big.png", PNG + b"\x00" * 300)
    assert status == 413
    assert_error(body, "file_too_large")
    status, body = await upload(world, sub["id"], "empty.pdf", b"")
    assert status == 400
    # Only the good file is recorded.
    files = await db.fetchval("SELECT files FROM submissions WHERE id = $1::uuid", sub["id"])
    assert [f["name"] for f in files] == ["essay.pdf"]
    # The author and staff download it; other students cannot.
    url = f"/api/v1/submissions/{sub['id']}/files/{meta['id']}"
    for who in (world.student, world.teacher, world.ta):
        resp = await world.client.get(url, headers=who.headers)
        assert resp.status == 200, who.name
        assert await resp.read() == PDF
        assert resp.headers["Content-Type"] == "application/pdf"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert (await world.call(world.other, "GET", url))[0] == 404
    assert (await world.call(world.observer, "GET", url))[0] == 404
    # Deleting removes it from the row and the store.
    await world.ok(world.student, "DELETE", url, status=204)
    assert (await world.call(world.student, "GET", url))[0] == 404
    status, _ = await upload(world, sub["id"], "pic.png", PNG)
    assert status == 201
    submitted = await world.ok(world.student, "POST", f"/api/v1/submissions/{sub['id']}/submit")
    assert [f["name"] for f in submitted["files"]] == ["pic.png"]
    status, body = await upload(world, sub["id"], "more.png", PNG)
    assert status == 409
    assert_error(body, "submission_not_draft")


async def test_failed_upload_leaves_no_orphaned_object(world: World, client: Any) -> None:
    from vtp.appkeys import STORE
    from vtp.storage import ObjectNotFound

    assignment = await make_assignment(world)
    store = client.server.app[STORE]
    # The draft is handed in while its file is being stored: the DB step refuses the
    # file, and the object already written must be removed again.
    sub2 = await start(world, assignment)
    original = store.put_file

    async def put_then_submit(key: str, path: Path, content_type: str, **kw: Any) -> Any:
        info = await original(key, path, content_type, **kw)
        await world.ok(world.student, "POST", f"/api/v1/submissions/{sub2['id']}/submit")
        put_then_submit.key = key  # type: ignore[attr-defined]
        return info

    store.put_file = put_then_submit
    try:
        status, body = await upload(world, sub2["id"], "notes.txt", b"some notes")
    finally:
        store.put_file = original
    assert status == 409
    assert_error(body, "submission_not_draft")
    try:
        await store.stat(put_then_submit.key)  # type: ignore[attr-defined]
        raise AssertionError("the orphaned object is still in the store")
    except ObjectNotFound:
        pass


def spooled(client: Any) -> list[Path]:
    """Temporary upload files left in the state directory."""
    from vtp.appkeys import CONFIG

    spool = client.server.app[CONFIG].data_dir / "upload-spool"
    return list(spool.iterdir()) if spool.exists() else []


async def test_large_uploads_stream_through_and_leave_nothing_behind(
    world: World, client: Any
) -> None:
    assignment = await make_assignment(
        world, allowed_file_types=["zip", "txt"], max_file_bytes=8 * 1024 * 1024
    )
    sub = await start(world, assignment)
    # 5 MiB: several spool writes; the download is streamed back byte for byte
    archive = b"PK\x03\x04" + os.urandom(5 * 1024 * 1024)
    status, meta = await upload(world, sub["id"], "project.zip", archive)
    assert status == 201, meta
    assert meta["size"] == len(archive)
    assert meta["sha256"] == hashlib.sha256(archive).hexdigest()
    resp = await world.client.get(
        f"/api/v1/submissions/{sub['id']}/files/{meta['id']}", headers=world.student.headers
    )
    assert resp.status == 200 and await resp.read() == archive
    # text is checked across the whole file: a multi-byte character split between two
    # spool writes is fine, one bad byte after 2 MiB is not text
    text = ("é" * (1024 * 1024 + 1)).encode()  # 2 MiB + 2 bytes, "é" straddles 1 MiB
    status, meta = await upload(world, sub["id"], "notes.txt", text)
    assert status == 201, meta
    assert meta["content_type"] == "text/plain"
    status, body = await upload(world, sub["id"], "bad.txt", b"a" * (2 * 1024 * 1024) + b"\xff")
    assert status == 415
    assert_error(body, "file_content_mismatch")
    status, body = await upload(world, sub["id"], "nul.txt", b"abc\x00def")
    assert status == 415

    # too large: refused while it streams in (no Content-Length to judge by up front)
    async def body_without_length() -> Any:
        for _ in range(10):
            yield b"PK\x03\x04" + b"\x00" * (1024 * 1024)

    resp = await world.client.post(
        f"/api/v1/submissions/{sub['id']}/files",
        params={"filename": "huge.zip"},
        data=body_without_length(),
        headers={**world.student.headers, "Content-Type": "application/octet-stream"},
    )
    assert resp.status == 413
    assert spooled(client) == []  # nothing left on disk, accepted or refused


async def test_grading_release_and_gradebook(world: World) -> None:
    a1 = await make_assignment(world, title="HW1", points_possible=10)
    a2 = await make_assignment(world, title="=HW2", points_possible=20)
    sub = await start(world, a1, body_text="answer", submit=True)
    grade_url = f"/api/v1/submissions/{sub['id']}/grade"
    assert (await world.call(world.student, "PUT", grade_url, {"score": 10}))[0] == 403
    status, body = await world.call(world.teacher, "PUT", grade_url, {"score": 11})
    assert status == 400
    assert assert_error(body, "validation_error")["details"][0]["field"] == "score"  # type: ignore[index]
    graded = await world.ok(world.ta, "PUT", grade_url, {"score": 8.5, "feedback": "Good"})
    assert graded["status"] == "graded" and graded["score"] == 8.5
    assert graded["graded_by"] == world.ta.user_id
    # Not released yet: the student sees no score.
    hidden = await world.ok(world.student, "GET", f"/api/v1/submissions/{sub['id']}")
    assert hidden["score"] is None and hidden["feedback"] is None
    assert hidden["status"] == "submitted"
    mine = await world.ok(world.student, "GET", f"/api/v1/courses/{world.course_id}/grades/me")
    assert mine["grades"] == {}
    # Nor can a status filter tell that a grade exists: it matches what the student sees.
    listing = f"/api/v1/assignments/{a1['id']}/submissions"
    for status, students_see in (("graded", []), ("submitted", [sub["id"]]), ("returned", [])):
        mine = await world.ok(world.student, "GET", f"{listing}?status={status}")
        assert [s["id"] for s in mine["items"]] == students_see, status
    staff_view = await world.ok(world.teacher, "GET", f"{listing}?status=graded")
    assert [s["id"] for s in staff_view["items"]] == [sub["id"]]
    staff_view = await world.ok(world.teacher, "GET", f"{listing}?status=submitted")
    assert staff_view["items"] == []
    await world.ok(world.teacher, "POST", f"/api/v1/submissions/{sub['id']}/return")
    shown = await world.ok(world.student, "GET", f"/api/v1/submissions/{sub['id']}")
    assert shown["score"] == 8.5 and shown["feedback"] == "Good"
    assert shown["status"] == "returned"
    mine = await world.ok(world.student, "GET", f"/api/v1/courses/{world.course_id}/grades/me")
    assert mine["grades"][a1["id"]]["score"] == 8.5 and mine["total"] == 8.5
    status, body = await world.call(
        world.teacher, "POST", f"/api/v1/submissions/{sub['id']}/return"
    )
    assert status == 409
    # A draft cannot be graded.
    draft = await start(world, a2)
    status, body = await world.call(
        world.teacher, "PUT", f"/api/v1/submissions/{draft['id']}/grade", {"score": 1}
    )
    assert status == 409
    assert_error(body, "submission_not_submitted")
    book = await world.ok(world.teacher, "GET", f"/api/v1/courses/{world.course_id}/gradebook")
    assert [a["title"] for a in book["assignments"]] == ["HW1", "=HW2"]
    assert book["points_possible_total"] == 30
    [row] = book["students"]
    assert row["user_id"] == world.student.user_id
    assert row["grades"] == {
        a1["id"]: {"score": 8.5, "status": "returned", "attempt": 1, "is_late": False}
    }
    for who in (world.student, world.observer):
        assert (await world.call(who, "GET", f"/api/v1/courses/{world.course_id}/gradebook"))[
            0
        ] == 403
    resp = await world.client.get(
        f"/api/v1/courses/{world.course_id}/gradebook.csv", headers=world.ta.headers
    )
    assert resp.status == 200 and resp.content_type == "text/csv"
    rows = list(csv.reader(io.StringIO(await resp.text())))
    assert rows[0] == ["user_id", "display_name", "email", "HW1 (10)", "'=HW2 (20)", "total (30)"]
    assert rows[1][0] == world.student.user_id and rows[1][3:] == ["8.5", "", "8.5"]


async def test_bulk_grading_is_all_or_nothing(world: World, db: asyncpg.Connection) -> None:
    assignment = await make_assignment(world, points_possible=10)
    first = await start(world, assignment, body_text="1", submit=True)
    second = await start(world, assignment, body_text="2", submit=True)
    draft = await start(world, assignment, body_text="3")
    url = f"/api/v1/assignments/{assignment['id']}/grades"
    status, body = await world.call(
        world.teacher,
        "POST",
        url,
        {
            "grades": [
                {"submission_id": first["id"], "score": 5},
                {"submission_id": draft["id"], "score": 5},
            ]
        },
    )
    assert status == 409
    details = assert_error(body, "bulk_grading_failed")["details"]
    assert details == {"index": 1, "submission_id": draft["id"], "reason": "draft"}
    assert await db.fetchval("SELECT count(*) FROM submissions WHERE score IS NOT NULL") == 0
    status, body = await world.call(
        world.teacher, "POST", url, {"grades": [{"submission_id": first["id"], "score": 50}]}
    )
    assert status == 400
    assert assert_error(body, "validation_error")["details"][0]["field"] == "grades.0.score"  # type: ignore[index]
    done = await world.ok(
        world.ta,
        "POST",
        url,
        {
            "grades": [
                {"submission_id": first["id"], "score": 5, "feedback": "ok"},
                {"submission_id": second["id"], "score": 9},
            ],
            "return_to_students": True,
        },
    )
    assert [s["status"] for s in done["items"]] == ["returned", "returned"]
    assert (await world.call(world.student, "POST", url, {"grades": []}))[0] == 403


async def test_store_outage_is_503_and_records_nothing(
    world: World, client: Any, db: asyncpg.Connection
) -> None:
    from vtp.appkeys import STORE
    from vtp.storage import StorageError

    assignment = await make_assignment(world)
    sub = await start(world, assignment)
    store = client.server.app[STORE]
    original = store.put_file

    async def down(key: str, path: Path, content_type: str, **kw: Any) -> Any:
        raise StorageError("connection refused")

    store.put_file = down
    try:
        status, body = await upload(world, sub["id"], "essay.pdf", PDF)
    finally:
        store.put_file = original
    assert status == 503
    assert_error(body, "storage_unavailable")
    assert spooled(client) == []
    files = await db.fetchval("SELECT files FROM submissions WHERE id = $1::uuid", sub["id"])
    assert files == []


async def test_overlapping_bulk_gradings_do_not_deadlock(world: World, accounts: Any) -> None:
    assignment = await make_assignment(world, points_possible=10)
    subs = [await start(world, assignment, body_text=str(i), submit=True) for i in range(20)]
    url = f"/api/v1/assignments/{assignment['id']}/grades"

    def grades(order: list[dict[str, Any]], score: int) -> dict[str, Any]:
        return {"grades": [{"submission_id": s["id"], "score": score} for s in order]}

    for _ in range(5):
        results = await asyncio.gather(
            world.call(world.teacher, "POST", url, grades(subs, 4)),
            world.call(world.ta, "POST", url, grades(list(reversed(subs)), 6)),
        )
        assert [status for status, _ in results] == [200, 200]
        # Answers keep the request's order.
        assert [s["id"] for s in results[1][1]["items"]] == [s["id"] for s in reversed(subs)]


async def test_a_parent_deleted_meanwhile_is_404_not_500(
    world: World, db: asyncpg.Connection
) -> None:
    import uuid

    import pytest

    from vtp.api.course_access import referenced_rows_exist
    from vtp.api.errors import ApiError, not_found
    from vtp.db import submissions as subs_db

    # What create_submission meets when the assignment is deleted between its check
    # and its insert.
    with pytest.raises(ApiError) as caught, referenced_rows_exist(not_found("gone")):
        async with db.transaction():
            await subs_db.create_attempt(db, uuid.uuid4(), uuid.UUID(world.student.user_id), 1, "")
    assert caught.value.status == 404
