"""/api/v1 assignments: create, update, list, get, delete (staff); students see the
published ones."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from vtp.api.access import authenticated
from vtp.api.course_access import (
    MEMBERS,
    STAFF,
    CourseAccess,
    CourseRole,
    enforce,
    referenced_rows_exist,
    require_course_role,
    who,
)
from vtp.api.endpoint import ReadBody, ReadQuery, endpoint
from vtp.api.errors import conflict, field_error, not_found
from vtp.api.uploads import EXPECTED, MAX_UPLOAD_BYTES
from vtp.api.validation import Body, ListQuery, Out, Page, derive, path_uuid, refuse_nulls, shaped
from vtp.appkeys import DB
from vtp.db import assignments as db
from vtp.db import models
from vtp.db.models import Assignment

routes = web.RouteTableDef()


Extension = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]{1,10}$")]
Points = Annotated[Decimal, Field(ge=0, le=100_000, max_digits=8, decimal_places=2)]


class _AssignmentFields(Body):
    @model_validator(mode="after")
    def _dates_and_types(self) -> Any:
        dates = [getattr(self, k, None) for k in ("unlock_at", "due_at", "lock_at")]
        present = [d for d in dates if d is not None]
        if present != sorted(present):
            raise ValueError("dates must be in order: unlock_at <= due_at <= lock_at")
        unknown = sorted(set(getattr(self, "allowed_file_types", None) or []) - set(EXPECTED))
        if unknown:
            raise ValueError(f"unsupported file types: {', '.join(unknown)}")
        return self


class AssignmentCreate(_AssignmentFields):
    title: str = Field(min_length=1, max_length=200)
    instructions_md: str = Field(default="", max_length=100_000)
    points_possible: Points = Decimal(100)
    status: Literal["draft", "published"] = "draft"
    unlock_at: AwareDatetime | None = None
    due_at: AwareDatetime | None = None
    lock_at: AwareDatetime | None = None
    allowed_attempts: int | None = Field(default=None, ge=1, le=100)
    allowed_file_types: list[Extension] = Field(default_factory=list, max_length=30)
    max_file_bytes: int = Field(default=10 * 1024 * 1024, ge=1, le=MAX_UPLOAD_BYTES)
    lesson_id: uuid.UUID | None = None


class AssignmentUpdate(_AssignmentFields):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    instructions_md: str | None = Field(default=None, max_length=100_000)
    points_possible: Points | None = None
    status: Literal["draft", "published"] | None = None
    unlock_at: AwareDatetime | None = None
    due_at: AwareDatetime | None = None
    lock_at: AwareDatetime | None = None
    allowed_attempts: int | None = Field(default=None, ge=1, le=100)
    allowed_file_types: list[Extension] | None = Field(default=None, max_length=30)
    max_file_bytes: int | None = Field(default=None, ge=1, le=MAX_UPLOAD_BYTES)
    lesson_id: uuid.UUID | None = None


NOT_NULL = (
    "title",
    "instructions_md",
    "points_possible",
    "status",
    "allowed_file_types",
    "max_file_bytes",
)


class AssignmentListQuery(ListQuery):
    status: Literal["draft", "published"] | None = None
    due_after: AwareDatetime | None = None
    due_before: AwareDatetime | None = None


AssignmentOut = derive("AssignmentOut", models.Assignment, replace={"points_possible": float})


def assignment_out(assignment: Assignment) -> Out:
    return shaped(AssignmentOut, assignment)


async def load_assignment(
    request: web.Request,
    roles: frozenset[CourseRole],
    *,
    write: bool = False,
    assignment_id: uuid.UUID | None = None,
) -> tuple[Assignment, CourseAccess]:
    """The assignment and the caller's course access; drafts are 404 to non-staff."""
    aid = assignment_id or path_uuid(request, "assignment_id")
    assignment = await db.get_assignment(request.app[DB], aid)
    if assignment is None:
        raise not_found("no such assignment")
    access = await require_course_role(
        request, assignment.course_id, MEMBERS, missing="no such assignment"
    )
    if assignment.status == "draft" and not access.is_staff:
        raise not_found("no such assignment")
    return assignment, enforce(access, roles, write=write)


async def _check_lesson(request: web.Request, course_id: uuid.UUID, lesson_id: uuid.UUID) -> None:
    found = await request.app[DB].fetchval(
        "SELECT 1 FROM lessons WHERE id = $1 AND course_id = $2", lesson_id, course_id
    )
    if found is None:
        raise field_error("lesson_id", "no such lesson in this course")


@routes.post("/api/v1/courses/{course_id}/assignments")
@authenticated
@who("the course's teachers and TAs")
@endpoint(body=AssignmentCreate, returns=AssignmentOut, status=201, errors=(403, 404, 409))
async def create_assignment(request: web.Request, read_body: ReadBody[AssignmentCreate]) -> Out:
    course_id = path_uuid(request, "course_id")
    access = await require_course_role(request, course_id, STAFF, write=True)
    body = await read_body()
    if body.lesson_id is not None:
        await _check_lesson(request, course_id, body.lesson_id)
    with referenced_rows_exist(field_error("lesson_id", "no such lesson in this course")):
        assignment = await db.create_assignment(
            request.app[DB], course_id, access.user_id, body.model_dump()
        )
    return assignment_out(assignment)


@routes.get("/api/v1/courses/{course_id}/assignments")
@authenticated
@who("members of the course (drafts: staff only)")
@endpoint(query=AssignmentListQuery, returns=AssignmentOut, many=True, errors=(403, 404, 409))
async def list_assignments(
    request: web.Request, read_query: ReadQuery[AssignmentListQuery]
) -> Page:
    course_id = path_uuid(request, "course_id")
    access = await require_course_role(request, course_id, MEMBERS)
    query = read_query()
    status = query.status
    if not access.is_staff:
        if status == "draft":
            return Page([], None)
        status = "published"
    rows = await db.list_assignments(
        request.app[DB],
        course_id,
        status=status,
        due_after=query.due_after,
        due_before=query.due_before,
        after=query.position(),
        limit=query.limit,
    )
    return query.page(rows, assignment_out)


@routes.get("/api/v1/assignments/{assignment_id}")
@authenticated
@who("members of the course (drafts: staff only)")
@endpoint(returns=AssignmentOut, errors=(400, 403, 404, 409))
async def get_assignment(request: web.Request) -> Out:
    assignment, _ = await load_assignment(request, MEMBERS)
    return assignment_out(assignment)


@routes.patch("/api/v1/assignments/{assignment_id}")
@authenticated
@who("the course's teachers and TAs")
@endpoint(body=AssignmentUpdate, returns=AssignmentOut, errors=(403, 404, 409))
async def update_assignment(request: web.Request, read_body: ReadBody[AssignmentUpdate]) -> Out:
    assignment, _ = await load_assignment(request, STAFF, write=True)
    body = await read_body()
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    refuse_nulls(changes, NOT_NULL)
    merged: dict[str, datetime | None] = {
        k: changes.get(k, getattr(assignment, k)) for k in ("unlock_at", "due_at", "lock_at")
    }
    present = [d for d in merged.values() if d is not None]
    if present != sorted(present):
        raise field_error("(body)", "dates must be in order: unlock_at <= due_at <= lock_at")
    if changes.get("lesson_id") is not None:
        await _check_lesson(request, assignment.course_id, changes["lesson_id"])
    with referenced_rows_exist(field_error("lesson_id", "no such lesson in this course")):
        updated = await db.update_assignment(request.app[DB], assignment.id, changes)
    if updated is None:
        raise not_found("no such assignment")
    return assignment_out(updated)


@routes.delete("/api/v1/assignments/{assignment_id}")
@authenticated
@who("the course's teachers and TAs")
@endpoint(status=204, errors=(400, 403, 404, 409))
async def delete_assignment(request: web.Request) -> web.Response:
    assignment, _ = await load_assignment(request, STAFF, write=True)
    if not await db.delete_assignment_without_submissions(request.app[DB], assignment.id):
        raise conflict("has_submissions", "an assignment with submissions cannot be deleted")
    return web.Response(status=204)
