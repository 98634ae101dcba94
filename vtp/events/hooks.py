"""One-line event hooks for the places where a change is made: each takes the change's
transaction and the row it returned, and writes its event in that transaction (the
outbox, :mod:`vtp.events.stream`; docs/events.md lists the ``data`` fields)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp import web

from vtp.db.models import Chat, CourseEnrollment, LiveSession, Submission
from vtp.events.envelope import EventType
from vtp.events.stream import record


async def session_changed(
    app: web.Application, conn: asyncpg.Connection, type: EventType, session: LiveSession
) -> None:
    await record(
        app,
        conn,
        type,
        course_id=session.course_id,
        session_id=session.id,
        title=session.title,
        status=session.status,
        host_id=session.host_id,
        scheduled_start=session.scheduled_start,
        scheduled_end=session.scheduled_end,
        started_at=session.started_at,
        ended_at=session.ended_at,
    )


async def chat_posted(app: web.Application, conn: asyncpg.Connection, msg: Chat) -> None:
    await record(
        app,
        conn,
        "chat.message",
        course_id=msg.course_id,
        session_id=msg.session_id,
        message_id=msg.id,
        author_id=msg.author_id,
        body=msg.body,
        created_at=msg.created_at,
    )


async def submission_changed(
    app: web.Application,
    conn: asyncpg.Connection,
    course_id: uuid.UUID,
    sub: Submission,
    *,
    graded_by: uuid.UUID | None = None,
) -> None:
    """submitted; graded (``graded_by`` given), and returned too when the grade was
    released at once; returned (released later)."""
    data: dict[str, Any] = {
        "submission_id": sub.id,
        "assignment_id": sub.assignment_id,
        "student_id": sub.student_id,
        "attempt": sub.attempt,
        "status": sub.status,
    }
    types: list[EventType] = []
    if sub.status == "submitted":
        types.append("submission.submitted")
    else:
        data["score"] = float(sub.score) if sub.score is not None else None
        if graded_by is not None:
            data["graded_by"] = graded_by
            types.append("submission.graded")
        if sub.status == "returned":
            types.append("submission.returned")
    for event_type in types:
        await record(app, conn, event_type, course_id=course_id, **data)


async def enrollment_changed(
    app: web.Application,
    conn: asyncpg.Connection,
    enrollment: CourseEnrollment,
    change: str | None = None,
) -> None:
    """``change``: enrolled, role_changed, dropped, removed, requested (default: from the
    enrollment's status)."""
    await record(
        app,
        conn,
        "enrollment.changed",
        course_id=enrollment.course_id,
        user_id=enrollment.user_id,
        role=enrollment.role,
        status=enrollment.status,
        change=change or ("enrolled" if enrollment.status == "active" else enrollment.status),
    )
