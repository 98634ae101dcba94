"""Queries on recordings, listed per course (through their session) or per session."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TypeAlias

import asyncpg

from vtp.db.keyset import Where
from vtp.db.models import Recording

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def get_with_course(conn: Conn, recording_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        """SELECT r.*, s.course_id, s.title AS session_title
           FROM recordings r JOIN live_sessions s ON s.id = r.session_id
           WHERE r.id = $1""",
        recording_id,
    )
    return row


async def list_recordings(
    conn: Conn,
    *,
    course_id: uuid.UUID | None,
    session_id: uuid.UUID | None,
    status: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    where = Where()
    where.add_if(course_id, "s.course_id = {}")
    where.add_if(session_id, "r.session_id = {}")
    where.add_if(status, "r.status = {}")
    where.after(after, "r")
    limit_sql = where.limit(limit)
    return list(
        await conn.fetch(
            f"""SELECT r.*, s.course_id, s.title AS session_title
                FROM recordings r JOIN live_sessions s ON s.id = r.session_id
                {where.sql()} ORDER BY r.created_at, r.id {limit_sql}""",
            *where.params,
        )
    )


def from_row(row: asyncpg.Record) -> Recording:
    return Recording.from_record(row)
