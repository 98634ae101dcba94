"""Queries on live_sessions, including the state machine's guarded transitions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias

import asyncpg

from vtp.db.keyset import Where
from vtp.db.models import LiveSession

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
Status = Literal["scheduled", "live", "ended", "cancelled"]

# target status -> (the status it may come from, extra SET clause)
TRANSITIONS: dict[str, tuple[str, str]] = {
    "live": ("scheduled", "started_at = now()"),
    "ended": ("live", "ended_at = now()"),
    "cancelled": ("scheduled", "ended_at = NULL"),
}


class InvalidTransition(Exception):
    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"{current} -> {target}")
        self.current = current
        self.target = target


async def create_session(
    conn: Conn,
    *,
    course_id: uuid.UUID,
    host_id: uuid.UUID,
    title: str,
    scheduled_start: datetime,
    scheduled_end: datetime,
    lesson_id: uuid.UUID | None,
    auto_record: bool,
    students_may_publish: bool,
) -> LiveSession:
    row = await conn.fetchrow(
        """INSERT INTO live_sessions (course_id, host_id, title, scheduled_start,
                                      scheduled_end, lesson_id, auto_record,
                                      students_may_publish)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *""",
        course_id,
        host_id,
        title,
        scheduled_start,
        scheduled_end,
        lesson_id,
        auto_record,
        students_may_publish,
    )
    return LiveSession.from_record(row)


async def get_session(conn: Conn, session_id: uuid.UUID) -> LiveSession | None:
    row = await conn.fetchrow("SELECT * FROM live_sessions WHERE id = $1", session_id)
    return LiveSession.from_record(row) if row else None


async def update_session(
    conn: Conn,
    session_id: uuid.UUID,
    changes: dict[str, Any],
    statuses: tuple[str, ...] = ("scheduled",),
) -> LiveSession | None:
    """Update a session in one of `statuses`; None if it is not (any more) in one."""
    columns = list(changes)
    sets = ", ".join(f"{col} = ${i + 2}" for i, col in enumerate(columns)) or "title = title"
    row = await conn.fetchrow(
        f"""UPDATE live_sessions SET {sets}
            WHERE id = $1 AND status = ANY(${len(columns) + 2}::text[]) RETURNING *""",
        session_id,
        *(changes[c] for c in columns),
        list(statuses),
    )
    return LiveSession.from_record(row) if row else None


async def transition(conn: Conn, session_id: uuid.UUID, target: str) -> LiveSession:
    """Move the session to `target` if the state machine allows it, atomically."""
    source, extra = TRANSITIONS[target]
    row = await conn.fetchrow(
        f"""UPDATE live_sessions SET status = $2, {extra}
            WHERE id = $1 AND status = $3 RETURNING *""",
        session_id,
        target,
        source,
    )
    if row is None:
        current = await conn.fetchval("SELECT status FROM live_sessions WHERE id = $1", session_id)
        raise InvalidTransition(str(current), target)
    return LiveSession.from_record(row)


async def list_sessions(
    conn: Conn,
    course_id: uuid.UUID,
    *,
    status: str | None,
    starts_after: datetime | None,
    starts_before: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[LiveSession]:
    where = Where(course_id)
    where.clauses.append("s.course_id = $1")
    where.add_if(status, "s.status = {}")
    where.add_if(starts_after, "s.scheduled_start >= {}")
    where.add_if(starts_before, "s.scheduled_start < {}")
    where.after(after, "s")
    limit_sql = where.limit(limit)
    rows = await conn.fetch(
        f"SELECT s.* FROM live_sessions s {where.sql()} ORDER BY s.created_at, s.id {limit_sql}",
        *where.params,
    )
    return [LiveSession.from_record(r) for r in rows]


@dataclass(frozen=True, slots=True)
class JoinTicket:
    """Whether and how a user may be in a live session's SFU room."""

    session_id: uuid.UUID
    course_id: uuid.UUID
    room_name: str
    status: str
    role: Literal["presenter", "viewer"]
    may_publish: bool
    course_role: str | None = None  # None for an admin who is not enrolled
    course_status: str = "active"

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": str(self.session_id),
            "room_name": self.room_name,
            "role": self.role,
            "may_publish": self.may_publish,
        }


async def room_is_session(conn: Conn, room_name: str) -> bool:
    """Does a live session (in any state) own this SFU room name?"""
    found = await conn.fetchval("SELECT 1 FROM live_sessions WHERE room_name = $1", room_name)
    return found is not None


async def join_ticket(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    is_admin: bool,
    session_id: uuid.UUID | None = None,
    room_name: str | None = None,
) -> JoinTicket | None:
    """The caller's ticket for a session (by id or room name), or None if they are not
    a member of its course. The signalling layer calls this before letting a peer into
    a room: teachers, TAs and admins present (the host too, as long as they are still
    the course's teacher or TA: hosting gives no power of its own); students view and
    publish only when the session allows it; observers only view. The session's status is returned
    so the caller can refuse rooms that are not live."""
    row = await conn.fetchrow(
        """SELECT s.id, s.course_id, s.room_name, s.status, s.host_id,
                  s.students_may_publish, c.status AS course_status,
                  CASE WHEN c.owner_id = $1 THEN 'teacher' ELSE e.role END AS course_role
           FROM live_sessions s
           JOIN courses c ON c.id = s.course_id
           LEFT JOIN course_enrollments e
                  ON e.course_id = s.course_id AND e.user_id = $1 AND e.status = 'active'
           WHERE ($2::uuid IS NOT NULL AND s.id = $2)
              OR ($3::text IS NOT NULL AND s.room_name = $3)""",
        user_id,
        session_id,
        room_name,
    )
    if row is None or (row["course_role"] is None and not is_admin):
        return None
    presenter = is_admin or row["course_role"] in ("teacher", "ta")
    may_publish = presenter or (row["students_may_publish"] and row["course_role"] == "student")
    return JoinTicket(
        session_id=row["id"],
        course_id=row["course_id"],
        room_name=row["room_name"],
        status=row["status"],
        role="presenter" if presenter else "viewer",
        may_publish=bool(may_publish),
        course_role=row["course_role"],
        course_status=row["course_status"],
    )
