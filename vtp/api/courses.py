"""/api/v1/courses and enrollments: create, update, archive, list, roster, enrol."""

from __future__ import annotations

import secrets
import uuid
from typing import Literal

import asyncpg
from aiohttp import web
from pydantic import Field, model_validator

from vtp.api.access import authenticated, principal_of, require_roles
from vtp.api.course_access import (
    MEMBERS,
    TEACHER,
    CourseAccess,
    CourseRole,
    load_course_access,
    require_course_role,
    who,
)
from vtp.api.endpoint import ReadBody, ReadQuery, endpoint, reply
from vtp.api.errors import ApiError, conflict, forbidden, not_found
from vtp.api.users import UserBrief
from vtp.api.validation import Body, ListQuery, Out, Page, derive, path_uuid, refuse_nulls, shaped
from vtp.appkeys import AUTHORITY, DB, REDIS
from vtp.auth.authority import AuthorityChange
from vtp.auth.ratelimit import RateLimiter
from vtp.db import courses as db
from vtp.db import models
from vtp.db.models import Course, CourseEnrollment
from vtp.events import hooks

routes = web.RouteTableDef()

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
ENROLLMENT_CODE_PATTERN = r"^[A-Za-z0-9-]+$"


# --- schemas ---------------------------------------------------------------------------
class CourseCreate(Body):
    code: str = Field(min_length=1, max_length=40, pattern=CODE_PATTERN)
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=20_000)
    status: Literal["draft", "active"] = "active"
    enrollment_code: str | None = Field(
        default=None, min_length=6, max_length=64, pattern=ENROLLMENT_CODE_PATTERN
    )


class CourseUpdate(Body):
    code: str | None = Field(default=None, min_length=1, max_length=40, pattern=CODE_PATTERN)
    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=20_000)
    status: Literal["draft", "active", "archived"] | None = None
    # null clears the code (self-enrolment off); absent leaves it unchanged.
    enrollment_code: str | None = Field(
        default=None, min_length=6, max_length=64, pattern=ENROLLMENT_CODE_PATTERN
    )


class CourseListQuery(ListQuery):
    scope: Literal["mine", "catalogue", "all"] = "mine"
    status: Literal["draft", "active", "archived"] | None = None
    q: str | None = Field(default=None, min_length=1, max_length=100)


class JoinRequest(Body):
    enrollment_code: str = Field(min_length=1, max_length=64)


class EnrollRequest(Body):
    user_id: uuid.UUID | None = None
    email: str | None = Field(default=None, min_length=3, max_length=254)
    role: CourseRole = "student"

    @model_validator(mode="after")
    def _one_target(self) -> EnrollRequest:
        if (self.user_id is None) == (self.email is None):
            raise ValueError("give exactly one of user_id and email")
        return self


class EnrollmentUpdate(Body):
    role: CourseRole


class RosterQuery(ListQuery):
    role: CourseRole | None = None
    status: Literal["active", "dropped", "removed", "requested"] | None = None


# --- answers ---------------------------------------------------------------------------
CourseOut = derive(
    "CourseOut",
    models.Course,
    optional=("enrollment_code",),  # staff only
    add={"my_role": (CourseRole | None, ...)},
)
EnrollmentOut = derive(
    "EnrollmentOut", models.CourseEnrollment, add={"user": (UserBrief | None, None)}
)


class JoinOut(Out):
    course: CourseOut  # type: ignore[valid-type]
    enrollment: EnrollmentOut  # type: ignore[valid-type]


class EnrollmentCodeOut(Out):
    enrollment_code: str


def course_out(course: Course, my_role: str | None, *, staff: bool) -> Out:
    return shaped(CourseOut, course, hide=() if staff else ("enrollment_code",), my_role=my_role)


def access_out(access: CourseAccess) -> Out:
    return course_out(access.course, access.role, staff=access.is_staff)


def enrollment_out(enrollment: CourseEnrollment) -> Out:
    return shaped(EnrollmentOut, enrollment)


def roster_line(row: asyncpg.Record, *, staff: bool) -> Out:
    """An enrollment with its member's name (and e-mail address, for staff)."""
    email = {"email": row["email"]} if staff else {}
    user = UserBrief(id=row["user_id"], display_name=row["display_name"], **email)
    return shaped(EnrollmentOut, CourseEnrollment.from_record(row), user=user)


def course_id_of(request: web.Request) -> uuid.UUID:
    return path_uuid(request, "course_id")


# --- courses -----------------------------------------------------------------------------
@routes.post("/api/v1/courses")
@require_roles("teacher", "admin")
@who("site teachers and admins; the caller becomes the owner (a teacher)")
@endpoint(body=CourseCreate, returns=CourseOut, status=201, errors=(409,))
async def create_course(request: web.Request, read_body: ReadBody[CourseCreate]) -> Out:
    body = await read_body()
    principal = principal_of(request)
    async with request.app[DB].acquire() as conn, conn.transaction():
        try:
            course = await db.create_course(
                conn,
                owner_id=principal.user_id,
                code=body.code,
                title=body.title,
                description=body.description,
                status=body.status,
                enrollment_code=body.enrollment_code,
            )
        except db.CourseCodeTaken as exc:
            raise conflict("course_code_taken", "another course has this code") from exc
        except db.EnrollmentCodeTaken as exc:
            raise conflict("enrollment_code_taken", "choose another enrollment code") from exc
    return course_out(course, "teacher", staff=True)


@routes.get("/api/v1/courses")
@authenticated
@who("any signed-in user; scope=all is for admins")
@endpoint(query=CourseListQuery, returns=CourseOut, many=True, errors=(403,))
async def list_courses(request: web.Request, read_query: ReadQuery[CourseListQuery]) -> Page:
    query = read_query()
    principal = principal_of(request)
    if query.scope == "all" and principal.role != "admin":
        raise forbidden("only admins may list every course")
    rows = await db.list_courses(
        request.app[DB],
        user_id=principal.user_id,
        scope=query.scope,
        status=query.status,
        q=query.q,
        after=query.position(),
        limit=query.limit,
    )
    admin = principal.role == "admin"
    return query.page(
        rows,
        lambda r: course_out(
            Course.from_record(r),
            r["my_role"],
            staff=admin or r["my_role"] in ("teacher", "ta"),
        ),
    )


@routes.get("/api/v1/courses/{course_id}")
@authenticated
@who(
    "members of the course; anyone signed in for an active course (catalogue); "
    "the enrollment code is shown to staff only"
)
@endpoint(returns=CourseOut, errors=(400, 404))
async def get_course(request: web.Request) -> Out:
    access = await load_course_access(request.app[DB], principal_of(request), course_id_of(request))
    # Members see their course; anyone signed in sees an active course (the catalogue).
    if access is None or not (access.is_member or access.course.status == "active"):
        raise not_found("no such course")
    return access_out(access)


@routes.patch("/api/v1/courses/{course_id}")
@authenticated
@who("the course's teachers")
@endpoint(body=CourseUpdate, returns=CourseOut, errors=(403, 404, 409))
async def update_course(request: web.Request, read_body: ReadBody[CourseUpdate]) -> Out:
    course_id = course_id_of(request)
    await require_course_role(request, course_id, TEACHER)
    body = await read_body()
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    refuse_nulls(changes, ("code", "title", "description", "status"))
    try:
        course = await db.update_course(request.app[DB], course_id, changes)
    except db.CourseCodeTaken as exc:
        raise conflict("course_code_taken", "another course has this code") from exc
    except db.EnrollmentCodeTaken as exc:
        raise conflict("enrollment_code_taken", "choose another enrollment code") from exc
    if course is None:
        raise not_found("no such course")
    access = await load_course_access(request.app[DB], principal_of(request), course_id)
    assert access is not None
    return access_out(access)


@routes.post("/api/v1/courses/{course_id}/archive")
@authenticated
@who("the course's teachers")
@endpoint(returns=CourseOut, errors=(400, 403, 404, 409))
async def archive_course(request: web.Request) -> Out:
    course_id = course_id_of(request)
    access = await require_course_role(request, course_id, TEACHER)
    await db.update_course(request.app[DB], course_id, {"status": "archived"})
    fresh = await load_course_access(request.app[DB], access.principal, course_id)
    assert fresh is not None
    return access_out(fresh)


@routes.post("/api/v1/courses/{course_id}/enrollment-code")
@authenticated
@who("the course's teachers")
@endpoint(returns=EnrollmentCodeOut, errors=(400, 403, 404, 409, 503))
async def new_enrollment_code(request: web.Request) -> Out:
    """Generate a fresh self-enrolment code (the old one stops working)."""
    course_id = course_id_of(request)
    await require_course_role(request, course_id, TEACHER, write=True)
    for _ in range(5):
        code = secrets.token_urlsafe(9).replace("_", "-")
        try:
            await db.update_course(request.app[DB], course_id, {"enrollment_code": code})
        except db.EnrollmentCodeTaken:
            continue
        return EnrollmentCodeOut(enrollment_code=code)
    raise ApiError(503, "unavailable", "could not generate a unique code; try again")


# --- enrollments -------------------------------------------------------------------------
JOIN_MAX_FAILURES = 10
JOIN_WINDOW_S = 600


def _too_many_codes(retry_after: int) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        f"too many wrong enrollment codes; try again in {retry_after} s",
        {"retry_after_s": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


@routes.post("/api/v1/enrollments/join")
@authenticated
@who("any signed-in user holding the course's enrollment code")
@endpoint(body=JoinRequest, returns=JoinOut, status=(201, 202), errors=(404, 409, 429))
async def join_course(request: web.Request, read_body: ReadBody[JoinRequest]) -> Out | web.Response:
    body = await read_body()
    principal = principal_of(request)
    pool = request.app[DB]
    # Wrong codes are counted per user, so codes cannot be guessed by trying many.
    limiter = RateLimiter(request.app[REDIS], "enrol-code")
    subject = str(principal.user_id)
    verdict = await limiter.peek(subject, limit=JOIN_MAX_FAILURES)
    if not verdict.allowed:
        raise _too_many_codes(verdict.retry_after_s)
    course = await db.get_course_by_enrollment_code(pool, body.enrollment_code)
    if course is None:
        await limiter.hit(subject, limit=JOIN_MAX_FAILURES, window_s=JOIN_WINDOW_S)
        raise ApiError(404, "not_found", "no course has this enrollment code")
    if course.status != "active":
        raise conflict("course_not_open", "this course is not open for enrolment")
    async with pool.acquire() as conn, conn.transaction():
        if course.owner_id == principal.user_id:
            raise conflict("already_enrolled", "you teach this course")
        enrollment, changed = await db.enroll(
            conn, course.id, principal.user_id, "student", by_teacher=False
        )
        if changed:
            await hooks.enrollment_changed(request.app, conn, enrollment)
    if enrollment.status == "requested":
        # A teacher removed this user: the code alone does not bring them back.
        answer = JoinOut(
            course=course_out(course, None, staff=False), enrollment=enrollment_out(enrollment)
        )
        return reply(answer, 202)
    if not changed:
        raise conflict("already_enrolled", "you are already enrolled in this course")
    return JoinOut(
        course=course_out(course, enrollment.role, staff=False),
        enrollment=enrollment_out(enrollment),
    )


@routes.get("/api/v1/courses/{course_id}/enrollments")
@authenticated
@who("members of the course (students and observers see active members without e-mail addresses)")
@endpoint(query=RosterQuery, returns=EnrollmentOut, many=True, errors=(403, 404, 409))
async def list_enrollments(request: web.Request, read_query: ReadQuery[RosterQuery]) -> Page:
    course_id = course_id_of(request)
    access = await require_course_role(request, course_id, MEMBERS)
    query = read_query()
    status = query.status
    if not access.is_staff:
        # Students and observers see who is in the course, not who left it.
        if status not in (None, "active"):
            raise forbidden(f"only staff see {status} enrollments")
        status = "active"
    rows = await db.roster(
        request.app[DB],
        course_id,
        role=query.role,
        status=status,
        after=query.position(),
        limit=query.limit,
    )
    staff = access.is_staff
    return query.page(rows, lambda r: roster_line(r, staff=staff))


@routes.post("/api/v1/courses/{course_id}/enrollments")
@authenticated
@who("the course's teachers")
@endpoint(body=EnrollRequest, returns=EnrollmentOut, status=201, errors=(403, 404, 409, 422))
async def enroll_user(request: web.Request, read_body: ReadBody[EnrollRequest]) -> Out:
    course_id = course_id_of(request)
    await require_course_role(request, course_id, TEACHER, write=True)
    body = await read_body()
    async with request.app[DB].acquire() as conn, conn.transaction():
        if body.user_id is not None:
            user = await conn.fetchrow(
                "SELECT id, is_active FROM users WHERE id = $1", body.user_id
            )
        else:
            user = await conn.fetchrow(
                "SELECT id, is_active FROM users WHERE lower(email) = lower($1)", body.email
            )
        if user is None or not user["is_active"]:
            raise ApiError(
                422,
                "unknown_user",
                "no active user matches",
                [{"field": "user_id" if body.user_id else "email", "message": "no such user"}],
            )
        owner = await conn.fetchval("SELECT owner_id FROM courses WHERE id = $1", course_id)
        if owner == user["id"]:
            raise conflict("already_enrolled", "the owner already teaches this course")
        enrollment, changed = await db.enroll(conn, course_id, user["id"], body.role)
        if not changed:
            raise conflict("already_enrolled", "this user is already enrolled")
        await hooks.enrollment_changed(request.app, conn, enrollment, "enrolled")
    return enrollment_out(enrollment)


@routes.patch("/api/v1/courses/{course_id}/enrollments/{user_id}")
@authenticated
@who("the course's teachers")
@endpoint(body=EnrollmentUpdate, returns=EnrollmentOut, errors=(403, 404, 409))
async def change_enrollment(request: web.Request, read_body: ReadBody[EnrollmentUpdate]) -> Out:
    course_id = course_id_of(request)
    user_id = path_uuid(request, "user_id")
    access = await require_course_role(request, course_id, TEACHER, write=True)
    body = await read_body()
    if user_id == access.course.owner_id:
        raise conflict("course_owner", "the owner's role cannot be changed")
    async with request.app[DB].acquire() as conn, conn.transaction():
        enrollment = await db.set_enrollment(conn, course_id, user_id, role=body.role, status=None)
        if enrollment is None:
            raise not_found("no such enrollment")
        await hooks.enrollment_changed(request.app, conn, enrollment, "role_changed")
    # A TA made a student loses the presenter's powers in a live class at once.
    await request.app[AUTHORITY].publish(
        AuthorityChange("course role changed", user_id=user_id, course_id=course_id)
    )
    return enrollment_out(enrollment)


@routes.delete("/api/v1/courses/{course_id}/enrollments/{user_id}")
@authenticated
@who("the course's teachers; any member for themself")
@endpoint(status=204, errors=(400, 403, 404, 409))
async def unenroll(request: web.Request) -> web.Response:
    """Drop an enrollment: a member may leave (``dropped``: the enrolment code brings them
    back); a teacher removes anyone (``removed``: coming back with the code only makes a
    ``requested`` enrollment, which the teacher approves with POST .../enrollments or
    declines with this DELETE)."""
    course_id = course_id_of(request)
    user_id = path_uuid(request, "user_id")
    access = await require_course_role(request, course_id, MEMBERS)
    if user_id != access.user_id and not access.is_teacher:
        raise forbidden("only a teacher may unenrol someone else")
    if user_id == access.course.owner_id:
        raise conflict("course_owner", "the course owner cannot be unenrolled")
    current = await db.get_enrollment(request.app[DB], course_id, user_id)
    by_teacher = user_id != access.user_id
    if current is None or current.status not in (
        ("active", "requested") if by_teacher else ("active",)
    ):
        raise not_found("no such enrollment")
    status = "removed" if by_teacher else "dropped"
    async with request.app[DB].acquire() as conn, conn.transaction():
        dropped = await db.set_enrollment(conn, course_id, user_id, role=None, status=status)
        if dropped is not None:
            await hooks.enrollment_changed(request.app, conn, dropped, status)
    await request.app[AUTHORITY].publish(
        AuthorityChange("unenrolled", user_id=user_id, course_id=course_id)
    )
    return web.Response(status=204)
