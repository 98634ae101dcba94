"""Queries on live_sessions, including the state machine's guarded transitions."""

from __future__ import annotations

import uuid
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
    conn: Conn, session_id: uuid.UUID, changes: dict[str, Any]
) -> LiveSession | None:
    """Update a *scheduled* session; None if it is not (any more) scheduled."""
    columns = list(changes)
    sets = ", ".join(f"{col} = ${i + 2}" for i, col in enumerate(columns)) or "title = title"
    row = await conn.fetchrow(
        f"""UPDATE live_sessions SET {sets}
            WHERE id = $1 AND status = 'scheduled' RETURNING *""",
        session_id,
        *(changes[c] for c in columns),
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
