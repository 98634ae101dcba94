"""/api/v1 live sessions: schedule, the scheduled -> live -> ended|cancelled state
machine, join tickets, and attendance (JSON and CSV)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Literal

import asyncpg
from aiohttp import web
from pydantic import AwareDatetime, Field, model_validator

from vtp.api.access import authenticated
from vtp.api.course_access import (
    MEMBERS,
    STAFF,
    CourseAccess,
    CourseRole,
    referenced_rows_exist,
    require_course_role,
    who,
)
from vtp.api.csvout import csv_response
from vtp.api.endpoint import ReadBody, ReadQuery, endpoint
from vtp.api.errors import ApiError, conflict, field_error, not_found
from vtp.api.live_rooms import close_room, open_room
from vtp.api.validation import Body, ListQuery, Out, Page, derive, path_uuid, refuse_nulls, shaped
from vtp.appkeys import AUTHORITY, DB, REDIS
from vtp.auth import removals
from vtp.auth.authority import AuthorityChange
from vtp.db import attendance as attendance_db
from vtp.db import models
from vtp.db import sessions as db
from vtp.db.models import LiveSession
from vtp.db.users import get_user
from vtp.events import hooks

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


MAX_SESSION_LENGTH = timedelta(hours=24)
LIVE_EDITABLE = frozenset({"students_may_publish"})


class SessionCreate(Body):
    title: str = Field(min_length=1, max_length=200)
    scheduled_start: AwareDatetime
    scheduled_end: AwareDatetime
    lesson_id: uuid.UUID | None = None
    auto_record: bool = False
    students_may_publish: bool = False

    @model_validator(mode="after")
    def _order(self) -> SessionCreate:
        check_schedule(self.scheduled_start, self.scheduled_end)
        return self


class SessionUpdate(Body):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    scheduled_start: AwareDatetime | None = None
    scheduled_end: AwareDatetime | None = None
    lesson_id: uuid.UUID | None = None
    auto_record: bool | None = None
    students_may_publish: bool | None = None


class SessionListQuery(ListQuery):
    status: Literal["scheduled", "live", "ended", "cancelled"] | None = None
    starts_after: AwareDatetime | None = None
    starts_before: AwareDatetime | None = None


def check_schedule(start: datetime, end: datetime) -> None:
    if end <= start:
        raise ValueError("scheduled_end must be after scheduled_start")
    if end - start > MAX_SESSION_LENGTH:
        raise ValueError("a session lasts at most 24 hours")


SessionOut = derive("SessionOut", models.LiveSession, optional=("room_name",))


class JoinTicketOut(Out):
    session_id: uuid.UUID
    room_name: str
    role: Literal["presenter", "viewer"]
    may_publish: bool


class AttendanceLineOut(Out):
    user_id: uuid.UUID
    display_name: str
    email: str
    course_role: CourseRole | None
    joins: int
    first_joined_at: datetime | None
    last_left_at: datetime | None
    attended_seconds: int
    present_now: bool
    talk_seconds: int
    turns: int
    hands_raised: int
    chat_messages: int


def session_out(session: LiveSession, access: CourseAccess) -> Out:
    # Only staff see the room name; others are handed it by /join.
    return shaped(SessionOut, session, hide=() if access.is_staff else ("room_name",))


async def load_session(
    request: web.Request, roles: frozenset[CourseRole], *, write: bool = False
) -> tuple[LiveSession, CourseAccess]:
    session = await db.get_session(request.app[DB], path_uuid(request, "session_id"))
    if session is None:
        raise not_found("no such session")
    access = await require_course_role(
        request, session.course_id, roles, write=write, missing="no such session"
    )
    return session, access


async def refuse_removed(app: web.Application, session_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """403 ``removed`` for a user the teacher removed from this session: removal closes
    every way into the class (join ticket, session chat, and the SFU room through
    :func:`vtp.signalling.access.room_access`)."""
    reason = await removals.reason(app[REDIS], session_id, user_id)
    if reason is not None:
        raise ApiError(403, "removed", f"you were removed from this class: {reason}")


async def _check_lesson(pool: asyncpg.Pool, course_id: uuid.UUID, lesson_id: uuid.UUID) -> None:
    found = await pool.fetchval(
        "SELECT 1 FROM lessons WHERE id = $1 AND course_id = $2", lesson_id, course_id
    )
    if found is None:
        raise field_error("lesson_id", "no such lesson in this course")


@routes.post("/api/v1/courses/{course_id}/sessions")
@authenticated
@who("the course's teachers and TAs")
@endpoint(body=SessionCreate, returns=SessionOut, status=201, errors=(403, 404, 409))
async def create_session(request: web.Request, read_body: ReadBody[SessionCreate]) -> Out:
    course_id = path_uuid(request, "course_id")
    access = await require_course_role(request, course_id, STAFF, write=True)
    body = await read_body()
    pool = request.app[DB]
    if body.lesson_id is not None:
        await _check_lesson(pool, course_id, body.lesson_id)
    with referenced_rows_exist(field_error("lesson_id", "no such lesson in this course")):
        async with pool.acquire() as conn, conn.transaction():
            session = await db.create_session(
                conn,
                course_id=course_id,
                host_id=access.user_id,
                title=body.title,
                scheduled_start=body.scheduled_start,
                scheduled_end=body.scheduled_end,
                lesson_id=body.lesson_id,
                auto_record=body.auto_record,
                students_may_publish=body.students_may_publish,
            )
            await hooks.session_changed(request.app, conn, "session.scheduled", session)
    return session_out(session, access)


@routes.get("/api/v1/courses/{course_id}/sessions")
@authenticated
@who("members of the course")
@endpoint(query=SessionListQuery, returns=SessionOut, many=True, errors=(403, 404, 409))
async def list_sessions(request: web.Request, read_query: ReadQuery[SessionListQuery]) -> Page:
    course_id = path_uuid(request, "course_id")
    access = await require_course_role(request, course_id, MEMBERS)
    query = read_query()
    rows = await db.list_sessions(
        request.app[DB],
        course_id,
        status=query.status,
        starts_after=query.starts_after,
        starts_before=query.starts_before,
        after=query.position(),
        limit=query.limit,
    )
    return query.page(rows, lambda s: session_out(s, access))


@routes.get("/api/v1/sessions/{session_id}")
@authenticated
@who("members of the course")
@endpoint(returns=SessionOut, errors=(400, 403, 404, 409))
async def get_session(request: web.Request) -> Out:
    session, access = await load_session(request, MEMBERS)
    return session_out(session, access)


@routes.patch("/api/v1/sessions/{session_id}")
@authenticated
@who("the course's teachers and TAs")
@endpoint(body=SessionUpdate, returns=SessionOut, errors=(403, 404, 409))
async def update_session(request: web.Request, read_body: ReadBody[SessionUpdate]) -> Out:
    session, access = await load_session(request, STAFF, write=True)
    body = await read_body()
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    refuse_nulls(
        changes,
        ("title", "scheduled_start", "scheduled_end", "auto_record", "students_may_publish"),
    )
    start = changes.get("scheduled_start", session.scheduled_start)
    end = changes.get("scheduled_end", session.scheduled_end)
    try:
        check_schedule(start, end)
    except ValueError as exc:
        raise field_error("scheduled_end", str(exc)) from exc
    if changes.get("lesson_id") is not None:
        await _check_lesson(request.app[DB], session.course_id, changes["lesson_id"])
    # A scheduled session may change anything; a live one only whether students may
    # publish (the teacher opens the floor during the session).
    statuses: tuple[str, ...] = ("scheduled",)
    if set(changes) <= LIVE_EDITABLE:
        statuses = ("scheduled", "live")
    if session.status not in statuses:
        raise conflict("session_not_editable", f"a {session.status} session cannot be edited")
    with referenced_rows_exist(field_error("lesson_id", "no such lesson in this course")):
        updated = await db.update_session(request.app[DB], session.id, changes, statuses)
    if updated is None:
        raise conflict("session_not_editable", "the session changed state meanwhile")
    if updated.students_may_publish != session.students_may_publish:
        # Students already in the room lose (or gain) the right to publish now.
        await request.app[AUTHORITY].publish(
            AuthorityChange(
                "students may publish" if updated.students_may_publish else "publishing closed",
                course_id=updated.course_id,
                session_id=updated.id,
            )
        )
    return session_out(updated, access)


def _invalid(exc: db.InvalidTransition) -> ApiError:
    return ApiError(
        409,
        "invalid_transition",
        f"a {exc.current} session cannot become {exc.target}",
        {"from": exc.current, "to": exc.target},
    )


@routes.post("/api/v1/sessions/{session_id}/start")
@authenticated
@who("the course's teachers and TAs")
@endpoint(returns=SessionOut, errors=(400, 403, 404, 409, 503))
async def start_session(request: web.Request) -> Out:
    session, access = await load_session(request, STAFF, write=True)
    async with request.app[DB].acquire() as conn, conn.transaction():
        try:
            live = await db.transition(conn, session.id, "live")
        except db.InvalidTransition as exc:
            raise _invalid(exc) from exc
        # Inside the transaction: if the room cannot be opened the session stays scheduled.
        await open_room(request.app, live.room_name)
        await hooks.session_changed(request.app, conn, "session.started", live)
    log.info("session started", extra={"session_id": str(live.id)})
    return session_out(live, access)


@routes.post("/api/v1/sessions/{session_id}/end")
@authenticated
@who("the course's teachers and TAs")
@endpoint(returns=SessionOut, errors=(400, 403, 404, 409))
async def end_session(request: web.Request) -> Out:
    # Imported here: the classroom (vtp.web) builds on this module.
    from vtp.web import participation

    session, access = await load_session(request, STAFF)
    async with request.app[DB].acquire() as conn, conn.transaction():
        try:
            ended = await db.transition(conn, session.id, "ended")
        except db.InvalidTransition as exc:
            raise _invalid(exc) from exc
        still_in = await attendance_db.close_open(conn, session.id)
        # who was still in left, then the session ended
        await participation.session_ended(request.app, conn, ended, still_in)
    # Every process's classroom channels and SFU peers of the session end.
    ender = await get_user(request.app[DB], access.principal.user_id)
    await request.app[AUTHORITY].publish(
        AuthorityChange(
            "session ended",
            course_id=ended.course_id,
            session_id=ended.id,
            by=ender.display_name if ender is not None else None,
        )
    )
    try:
        await close_room(request.app, ended.room_name)
    except Exception:  # the session is ended whatever the SFU says
        log.exception("closing room %s failed", ended.room_name)
    participation.summarise(request.app, ended)  # once every node's counters are in
    log.info("session ended", extra={"session_id": str(ended.id)})
    return session_out(ended, access)


@routes.post("/api/v1/sessions/{session_id}/cancel")
@authenticated
@who("the course's teachers and TAs")
@endpoint(returns=SessionOut, errors=(400, 403, 404, 409))
async def cancel_session(request: web.Request) -> Out:
    session, access = await load_session(request, STAFF)
    async with request.app[DB].acquire() as conn, conn.transaction():
        try:
            cancelled = await db.transition(conn, session.id, "cancelled")
        except db.InvalidTransition as exc:
            raise _invalid(exc) from exc
        await hooks.session_changed(request.app, conn, "session.cancelled", cancelled)
    return session_out(cancelled, access)


@routes.post("/api/v1/sessions/{session_id}/join")
@authenticated
@who("members of the course while the session is live")
@endpoint(returns=JoinTicketOut, errors=(400, 403, 404, 409))
async def join_session(request: web.Request) -> Out:
    """A join ticket: the room to join over signalling and the caller's media role.
    Staff (and the host) present; others view, and may publish only when allowed."""
    session, access = await load_session(request, MEMBERS)
    if session.status != "live":
        raise conflict("session_not_live", f"the session is {session.status}, not live")
    ticket = await db.join_ticket(
        request.app[DB], user_id=access.user_id, is_admin=access.is_admin, session_id=session.id
    )
    if ticket is None:  # unenrolled meanwhile
        raise not_found("no such session")
    await refuse_removed(request.app, session.id, access.user_id)
    return JoinTicketOut.model_validate(ticket.to_json())


@routes.get("/api/v1/sessions/{session_id}/attendance")
@authenticated
@who("the course's teachers and TAs")
@endpoint(returns=AttendanceLineOut, many=True, errors=(400, 403, 404, 409))
async def get_attendance(request: web.Request) -> Page:
    session, _ = await load_session(request, STAFF)
    lines = await attendance_db.attendance(request.app[DB], session.id)
    # Everyone on the roster, on one page.
    return Page([AttendanceLineOut.model_validate(line.to_json()) for line in lines], None)


@routes.get("/api/v1/sessions/{session_id}/attendance.csv")
@authenticated
@who("the course's teachers and TAs")
@endpoint(media="text/csv", errors=(400, 403, 404, 409))
async def attendance_csv(request: web.Request) -> web.Response:
    session, _ = await load_session(request, STAFF)
    lines = await attendance_db.attendance(request.app[DB], session.id)
    header = [
        "user_id",
        "display_name",
        "email",
        "course_role",
        "joins",
        "first_joined_at",
        "last_left_at",
        "attended_seconds",
        "talk_seconds",
        "turns",
        "hands_raised",
        "chat_messages",
    ]
    rows = [
        [
            line.user_id,
            line.display_name,
            line.email,
            line.course_role or "",
            line.joins,
            line.first_joined_at.isoformat() if line.first_joined_at else "",
            line.last_left_at.isoformat() if line.last_left_at else "",
            line.attended_seconds,
            round(line.participation.talk_ms / 1000),
            line.participation.turns,
            line.participation.hands_raised,
            line.participation.chat_messages,
        ]
        for line in lines
    ]
    return csv_response(f"attendance-{session.id}.csv", header, rows)
