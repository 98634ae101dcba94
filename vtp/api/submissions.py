"""/api/v1 submissions, grading and the gradebook.

A student's work on an assignment is a series of attempts; each attempt is a submission
row that goes draft -> submitted -> graded -> returned. A student sees only their own
submissions, and sees a score and feedback only once the grade is returned (until then
a graded submission shows as "submitted" to them). Staff (teachers, TAs) see and grade
every submission of their course.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import asyncpg
from aiohttp import web
from pydantic import Field

from vtp.api.access import authenticated
from vtp.api.assignments import Points, load_assignment
from vtp.api.course_access import (
    MEMBERS,
    PARTICIPANTS,
    STAFF,
    STUDENT,
    CourseAccess,
    enforce,
    referenced_rows_exist,
    require_course_role,
    require_student,
    who,
)
from vtp.api.csvout import csv_response
from vtp.api.endpoint import ReadBody, ReadQuery, endpoint
from vtp.api.errors import ApiError, conflict, field_error, forbidden, not_found
from vtp.api.uploads import (
    MAX_FILES,
    FileOut,
    delete_quietly,
    download,
    file_out,
    receive_file,
    store_put,
)
from vtp.api.validation import Body, ListQuery, Out, Page, derive, path_uuid, shaped
from vtp.appkeys import DB, STORE
from vtp.db import models
from vtp.db import submissions as db
from vtp.db.models import Assignment, Submission
from vtp.events import hooks

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


MAX_BODY_TEXT = 100_000
MAX_FEEDBACK = 10_000
MAX_BULK = 200


class SubmissionCreate(Body):
    body_text: str = Field(default="", max_length=MAX_BODY_TEXT)
    submit: bool = False


class SubmissionUpdate(Body):
    body_text: str = Field(max_length=MAX_BODY_TEXT)


class SubmissionListQuery(ListQuery):
    status: Literal["draft", "submitted", "graded", "returned"] | None = None
    student_id: uuid.UUID | None = None


class GradeRequest(Body):
    score: Points
    feedback: str | None = Field(default=None, max_length=MAX_FEEDBACK)
    return_to_student: bool = False


class BulkGradeItem(Body):
    submission_id: uuid.UUID
    score: Points
    feedback: str | None = Field(default=None, max_length=MAX_FEEDBACK)


class BulkGradeRequest(Body):
    grades: list[BulkGradeItem] = Field(min_length=1, max_length=MAX_BULK)
    return_to_students: bool = False


# --- rendering and loading ----------------------------------------------------------------
SubmissionOut = derive(
    "SubmissionOut",
    models.Submission,
    replace={"files": list[FileOut], "score": float | None},
    add={"student_name": (str | None, None)},
)


class GradeCell(Out):
    score: float | None
    status: Literal["graded", "returned"]
    attempt: int
    is_late: bool


class GradebookAssignment(Out):
    id: uuid.UUID
    title: str
    points_possible: float
    status: Literal["draft", "published"]
    due_at: datetime | None


class GradebookRow(Out):
    user_id: uuid.UUID
    display_name: str
    email: str
    grades: dict[str, GradeCell]
    total: float


class GradebookOut(Out):
    assignments: list[GradebookAssignment]
    points_possible_total: float
    students: list[GradebookRow]


class MyGradesOut(Out):
    assignments: list[GradebookAssignment]
    points_possible_total: float
    grades: dict[str, GradeCell]
    total: float


class BulkGradeOut(Out):
    items: list[SubmissionOut]  # type: ignore[valid-type]


def submission_out(sub: Submission, *, staff: bool, **more: Any) -> Out:
    changes: dict[str, Any] = {"files": [file_out(f) for f in sub.files]}
    if not staff and sub.status != "returned":
        changes.update(score=None, feedback=None, graded_by=None, graded_at=None)
        if sub.status == "graded":
            changes["status"] = "submitted"  # the grade is not released yet
    return shaped(SubmissionOut, sub, **changes, **more)


def stored_statuses(shown: str | None, *, staff: bool) -> list[str] | None:
    """The stored statuses a status filter matches. A student sees an unreleased grade
    as "submitted" (`submission_out`), so their filter must match what they see: else
    `?status=graded` would reveal that a grade exists before it is returned."""
    if shown is None or staff:
        return None if shown is None else [shown]
    return {"graded": [], "submitted": ["submitted", "graded"]}.get(shown, [shown])


async def load_submission(
    request: web.Request,
) -> tuple[Submission, Assignment, CourseAccess]:
    """The submission if the caller is its author or staff of its course, else 404."""
    sub = await db.get_submission(request.app[DB], path_uuid(request, "submission_id"))
    if sub is None:
        raise not_found("no such submission")
    try:
        assignment, access = await load_assignment(
            request, MEMBERS, assignment_id=sub.assignment_id
        )
    except ApiError as exc:
        if exc.status == 404:
            raise not_found("no such submission") from exc
        raise
    if not access.is_staff and sub.student_id != access.user_id:
        raise not_found("no such submission")
    return sub, assignment, access


def _require_author(sub: Submission, access: CourseAccess) -> None:
    if sub.student_id != access.user_id:
        raise forbidden("only the student who owns this submission may change it")
    enforce(access, STUDENT, write=True)


def _require_draft(sub: Submission) -> None:
    if sub.status != "draft":
        raise conflict("submission_not_draft", f"the submission is {sub.status}")


def check_open(assignment: Assignment, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    if assignment.unlock_at is not None and now < assignment.unlock_at:
        raise conflict("assignment_not_open", "the assignment is not open yet")
    if assignment.lock_at is not None and now >= assignment.lock_at:
        raise conflict("assignment_locked", "the assignment is locked: no more submissions")


def _empty(sub: Submission) -> bool:
    return not sub.body_text.strip() and not sub.files


# --- student work -------------------------------------------------------------------------
@routes.post("/api/v1/assignments/{assignment_id}/submissions")
@authenticated
@who("students of the course")
@endpoint(
    body=SubmissionCreate,
    optional_body=True,
    returns=SubmissionOut,
    status=201,
    errors=(403, 404, 409, 422),
)
async def create_submission(request: web.Request, read_body: ReadBody[SubmissionCreate]) -> Out:
    """Start the next attempt (a draft), or hand it in at once with "submit": true."""
    assignment, access = await load_assignment(request, STUDENT, write=True)
    require_student(access)
    body = await read_body()
    check_open(assignment)
    async with request.app[DB].acquire() as conn, conn.transaction():
        # One attempt at a time per student and assignment.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))", f"{assignment.id}:{access.user_id}"
        )
        attempts = await db.student_attempts(conn, assignment.id, access.user_id)
        draft = next((a for a in attempts if a.status == "draft"), None)
        if draft is not None:
            raise ApiError(
                409,
                "draft_exists",
                "finish or edit your current draft first",
                {"submission_id": str(draft.id)},
            )
        if assignment.allowed_attempts is not None and len(attempts) >= (
            assignment.allowed_attempts
        ):
            raise conflict(
                "attempts_exhausted",
                f"all {assignment.allowed_attempts} allowed attempts are used",
            )
        attempt = max((a.attempt for a in attempts), default=0) + 1
        with referenced_rows_exist(not_found("no such assignment")):
            sub = await db.create_attempt(
                conn, assignment.id, access.user_id, attempt, body.body_text
            )
        if body.submit:
            if _empty(sub):
                raise ApiError(422, "empty_submission", "write something or attach a file")
            submitted = await db.submit(conn, sub.id)
            assert submitted is not None
            sub = submitted
        if sub.status == "submitted":
            await hooks.submission_changed(request.app, conn, access.course.id, sub)
    return submission_out(sub, staff=False)


@routes.get("/api/v1/assignments/{assignment_id}/submissions")
@authenticated
@who("the course's teachers and TAs (all); students (their own)")
@endpoint(query=SubmissionListQuery, returns=SubmissionOut, many=True, errors=(403, 404, 409))
async def list_submissions(
    request: web.Request, read_query: ReadQuery[SubmissionListQuery]
) -> Page:
    assignment, access = await load_assignment(request, PARTICIPANTS)
    query = read_query()
    student_id = query.student_id
    if not access.is_staff:
        if student_id is not None and student_id != access.user_id:
            raise forbidden("students see only their own submissions")
        student_id = access.user_id
    rows = await db.list_submissions(
        request.app[DB],
        assignment.id,
        student_id=student_id,
        statuses=stored_statuses(query.status, staff=access.is_staff),
        after=query.position(),
        limit=query.limit,
    )
    staff = access.is_staff

    def render(row: asyncpg.Record) -> Out:
        sub = Submission.from_record(row)
        return submission_out(sub, staff=staff, student_name=row["student_name"])

    return query.page(rows, render)


@routes.get("/api/v1/submissions/{submission_id}")
@authenticated
@who("its student; the course's teachers and TAs")
@endpoint(returns=SubmissionOut, errors=(400, 403, 404, 409))
async def get_submission(request: web.Request) -> Out:
    sub, _, access = await load_submission(request)
    return submission_out(sub, staff=access.is_staff)


@routes.patch("/api/v1/submissions/{submission_id}")
@authenticated
@who("its student")
@endpoint(body=SubmissionUpdate, returns=SubmissionOut, errors=(403, 404, 409))
async def update_submission(request: web.Request, read_body: ReadBody[SubmissionUpdate]) -> Out:
    sub, assignment, access = await load_submission(request)
    _require_author(sub, access)
    body = await read_body()
    _require_draft(sub)
    check_open(assignment)
    updated = await db.set_body(request.app[DB], sub.id, body.body_text)
    if updated is None:
        raise conflict("submission_not_draft", "the submission was handed in meanwhile")
    return submission_out(updated, staff=False)


@routes.post("/api/v1/submissions/{submission_id}/submit")
@authenticated
@who("its student")
@endpoint(returns=SubmissionOut, errors=(400, 403, 404, 409, 422))
async def submit_submission(request: web.Request) -> Out:
    sub, assignment, access = await load_submission(request)
    _require_author(sub, access)
    _require_draft(sub)
    check_open(assignment)
    if _empty(sub):
        raise ApiError(422, "empty_submission", "write something or attach a file")
    async with request.app[DB].acquire() as conn, conn.transaction():
        submitted = await db.submit(conn, sub.id)
        if submitted is None:
            raise conflict("submission_not_draft", "the submission was handed in meanwhile")
        await hooks.submission_changed(request.app, conn, access.course.id, submitted)
    return submission_out(submitted, staff=False)


# --- files --------------------------------------------------------------------------------
@routes.post("/api/v1/submissions/{submission_id}/files")
@authenticated
@who("its student")
@endpoint(returns=FileOut, upload=True, status=201, errors=(400, 403, 404, 409, 413, 415, 503))
async def upload_file(request: web.Request) -> Out:
    """Attach a file to a draft: the raw body, named by ?filename=."""
    sub, assignment, access = await load_submission(request)
    _require_author(sub, access)
    _require_draft(sub)
    check_open(assignment)
    if len(sub.files) >= MAX_FILES:
        raise conflict("too_many_files", f"a submission holds at most {MAX_FILES} files")
    meta, upload = await receive_file(
        request, max_bytes=assignment.max_file_bytes, allowed=assignment.allowed_file_types
    )
    meta["key"] = f"submissions/{sub.id}/{meta['id']}"
    await store_put(request.app[STORE], meta["key"], upload, meta["content_type"])
    try:
        async with request.app[DB].acquire() as conn, conn.transaction():
            current = await db.lock_submission(conn, sub.id)
            if current is None or current.status != "draft":
                raise conflict("submission_not_draft", "the submission was handed in meanwhile")
            if len(current.files) >= MAX_FILES:
                raise conflict("too_many_files", f"a submission holds at most {MAX_FILES} files")
            updated = await db.set_files(conn, sub.id, [*current.files, meta])
            assert updated is not None
    except BaseException:
        # No orphaned object: the row does not mention it, so remove it.
        await delete_quietly(request.app[STORE], meta["key"])
        raise
    return file_out(meta)


def _find_file(sub: Submission, file_id: str) -> dict[str, Any]:
    for meta in sub.files:
        if meta.get("id") == file_id:
            return meta
    raise not_found("no such file")


@routes.get("/api/v1/submissions/{submission_id}/files/{file_id}")
@authenticated
@who("its student; the course's teachers and TAs")
@endpoint(media="application/octet-stream", errors=(400, 403, 404, 409, 503))
async def get_file(request: web.Request) -> web.StreamResponse:
    sub, _, _ = await load_submission(request)
    meta = _find_file(sub, str(path_uuid(request, "file_id")))
    return await download(request, meta)


@routes.delete("/api/v1/submissions/{submission_id}/files/{file_id}")
@authenticated
@who("its student")
@endpoint(status=204, errors=(400, 403, 404, 409))
async def delete_file(request: web.Request) -> web.Response:
    sub, _, access = await load_submission(request)
    _require_author(sub, access)
    _require_draft(sub)
    file_id = str(path_uuid(request, "file_id"))
    _find_file(sub, file_id)
    async with request.app[DB].acquire() as conn, conn.transaction():
        current = await db.lock_submission(conn, sub.id)
        if current is None or current.status != "draft":
            raise conflict("submission_not_draft", "the submission was handed in meanwhile")
        meta = _find_file(current, file_id)
        await db.set_files(conn, sub.id, [f for f in current.files if f is not meta])
    await delete_quietly(request.app[STORE], meta["key"])
    return web.Response(status=204)


# --- grading ------------------------------------------------------------------------------
def _check_score(score: Decimal, assignment: Assignment, field: str) -> None:
    if score > assignment.points_possible:
        raise field_error(field, f"must be at most {assignment.points_possible}")


@routes.put("/api/v1/submissions/{submission_id}/grade")
@authenticated
@who("the course's teachers and TAs")
@endpoint(body=GradeRequest, returns=SubmissionOut, errors=(403, 404, 409))
async def grade_submission(request: web.Request, read_body: ReadBody[GradeRequest]) -> Out:
    sub, assignment, access = await load_submission(request)
    enforce(access, STAFF, write=True)
    body = await read_body()
    _check_score(body.score, assignment, "score")
    async with request.app[DB].acquire() as conn, conn.transaction():
        graded = await db.grade(
            conn,
            sub.id,
            score=body.score,
            feedback=body.feedback,
            graded_by=access.user_id,
            return_now=body.return_to_student,
        )
        if graded is None:
            raise conflict("submission_not_submitted", "a draft cannot be graded")
        await hooks.submission_changed(
            request.app, conn, access.course.id, graded, graded_by=access.user_id
        )
    return submission_out(graded, staff=True)


@routes.post("/api/v1/submissions/{submission_id}/return")
@authenticated
@who("the course's teachers and TAs")
@endpoint(returns=SubmissionOut, errors=(400, 403, 404, 409))
async def return_submission(request: web.Request) -> Out:
    """Release the grade to the student (graded -> returned)."""
    sub, _, access = await load_submission(request)
    enforce(access, STAFF, write=True)
    async with request.app[DB].acquire() as conn, conn.transaction():
        returned = await db.return_graded(conn, sub.id)
        if returned is None:
            raise conflict("submission_not_graded", f"a {sub.status} submission cannot be returned")
        await hooks.submission_changed(request.app, conn, access.course.id, returned)
    return submission_out(returned, staff=True)


@routes.post("/api/v1/assignments/{assignment_id}/grades")
@authenticated
@who("the course's teachers and TAs")
@endpoint(body=BulkGradeRequest, returns=BulkGradeOut, errors=(403, 404, 409))
async def bulk_grade(request: web.Request, read_body: ReadBody[BulkGradeRequest]) -> Out:
    """Grade many submissions of one assignment at once: all or nothing."""
    assignment, access = await load_assignment(request, STAFF, write=True)
    body = await read_body()
    ids = [g.submission_id for g in body.grades]
    if len(set(ids)) != len(ids):
        raise field_error("grades", "a submission appears more than once")
    for i, item in enumerate(body.grades):
        _check_score(item.score, assignment, f"grades.{i}.score")
    results: dict[int, Submission] = {}
    # Rows are locked in submission-id order, whatever the request's order, so two
    # overlapping bulk gradings cannot deadlock.
    ordered = sorted(enumerate(body.grades), key=lambda pair: pair[1].submission_id)
    async with request.app[DB].acquire() as conn, conn.transaction():
        for i, item in ordered:
            owner = await conn.fetchval(
                "SELECT assignment_id FROM submissions WHERE id = $1", item.submission_id
            )
            graded = None
            if owner == assignment.id:
                graded = await db.grade(
                    conn,
                    item.submission_id,
                    score=item.score,
                    feedback=item.feedback,
                    graded_by=access.user_id,
                    return_now=body.return_to_students,
                )
            if graded is None:
                raise ApiError(
                    409,
                    "bulk_grading_failed",
                    "nothing was graded: a submission is not gradable",
                    {
                        "index": i,
                        "submission_id": str(item.submission_id),
                        "reason": "not_found" if owner != assignment.id else "draft",
                    },
                )
            results[i] = graded
        for graded in results.values():
            await hooks.submission_changed(
                request.app, conn, access.course.id, graded, graded_by=access.user_id
            )
    return BulkGradeOut(
        items=[submission_out(results[i], staff=True) for i in range(len(body.grades))]
    )


# --- gradebook ----------------------------------------------------------------------------
def _num(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


async def _gradebook(
    request: web.Request,
    course_id: uuid.UUID,
    *,
    student_id: uuid.UUID | None,
    returned_only: bool,
) -> dict[str, Any]:
    assignments, students, grades = await db.gradebook(
        request.app[DB], course_id, student_id=student_id, returned_only=returned_only
    )
    by_student: dict[uuid.UUID, dict[str, Any]] = {}
    for g in grades:
        by_student.setdefault(g["student_id"], {})[str(g["assignment_id"])] = {
            "score": _num(g["score"]),
            "status": g["status"],
            "attempt": g["attempt"],
            "is_late": g["is_late"],
        }
    rows = []
    for s in students:
        mine = by_student.get(s["id"], {})
        total = sum((entry["score"] or 0.0) for entry in mine.values())
        rows.append(
            {
                "user_id": str(s["id"]),
                "display_name": s["display_name"],
                "email": s["email"],
                "grades": mine,
                "total": total,
            }
        )
    return {
        "assignments": [
            {
                "id": str(a["id"]),
                "title": a["title"],
                "points_possible": float(a["points_possible"]),
                "status": a["status"],
                "due_at": a["due_at"].isoformat() if a["due_at"] else None,
            }
            for a in assignments
        ],
        "points_possible_total": float(sum(a["points_possible"] for a in assignments)),
        "students": rows,
    }


@routes.get("/api/v1/courses/{course_id}/gradebook")
@authenticated
@who("the course's teachers and TAs")
@endpoint(returns=GradebookOut, errors=(400, 403, 404, 409))
async def gradebook(request: web.Request) -> Out:
    course_id = path_uuid(request, "course_id")
    await require_course_role(request, course_id, STAFF)
    book = await _gradebook(request, course_id, student_id=None, returned_only=False)
    return GradebookOut.model_validate(book)


@routes.get("/api/v1/courses/{course_id}/gradebook.csv")
@authenticated
@who("the course's teachers and TAs")
@endpoint(media="text/csv", errors=(400, 403, 404, 409))
async def gradebook_csv(request: web.Request) -> web.Response:
    course_id = path_uuid(request, "course_id")
    await require_course_role(request, course_id, STAFF)
    book = await _gradebook(request, course_id, student_id=None, returned_only=False)
    header = ["user_id", "display_name", "email"]
    header += [f"{a['title']} ({a['points_possible']:g})" for a in book["assignments"]]
    header.append(f"total ({book['points_possible_total']:g})")
    rows = []
    for s in book["students"]:
        cells: list[object] = [s["user_id"], s["display_name"], s["email"]]
        for a in book["assignments"]:
            entry = s["grades"].get(a["id"])
            cells.append("" if entry is None else f"{entry['score']:g}")
        cells.append(f"{s['total']:g}")
        rows.append(cells)
    return csv_response(f"gradebook-{course_id}.csv", header, rows)


@routes.get("/api/v1/courses/{course_id}/grades/me")
@authenticated
@who("students of the course")
@endpoint(returns=MyGradesOut, errors=(400, 403, 404, 409))
async def my_grades(request: web.Request) -> Out:
    """A student's own returned grades in the course."""
    course_id = path_uuid(request, "course_id")
    access = require_student(await require_course_role(request, course_id, STUDENT))
    book = await _gradebook(request, course_id, student_id=access.user_id, returned_only=True)
    me = book["students"][0] if book["students"] else {"grades": {}, "total": 0.0}
    return MyGradesOut.model_validate(
        {
            "assignments": book["assignments"],
            "points_possible_total": book["points_possible_total"],
            "grades": me["grades"],
            "total": me["total"],
        }
    )
