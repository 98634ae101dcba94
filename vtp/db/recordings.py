"""Queries on recordings: the listings (per course, through their session, or per
session) and the recorder's writes (status recording -> uploading -> available or failed)
with the live-session lookups it needs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

import asyncpg

from vtp.db.keyset import Where
from vtp.db.models import EndedReason, Recording

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


class AlreadyRecording(Exception):
    pass


class NotLive(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True, slots=True)
class LiveRoom:
    session_id: uuid.UUID
    course_id: uuid.UUID
    room_name: str
    status: str
    auto_record: bool


async def live_room(conn: Conn, session_id: uuid.UUID) -> LiveRoom | None:
    row = await conn.fetchrow(
        """SELECT id, course_id, room_name, status, auto_record FROM live_sessions
           WHERE id = $1""",
        session_id,
    )
    return _live_room(row)


async def live_room_by_name(conn: Conn, room_name: str) -> LiveRoom | None:
    row = await conn.fetchrow(
        """SELECT id, course_id, room_name, status, auto_record FROM live_sessions
           WHERE room_name = $1""",
        room_name,
    )
    return _live_room(row)


async def owner(conn: Conn, recording_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(session id, course id) of a recording."""
    row = await conn.fetchrow(
        """SELECT s.id, s.course_id FROM recordings r JOIN live_sessions s ON s.id = r.session_id
           WHERE r.id = $1""",
        recording_id,
    )
    return (row["id"], row["course_id"]) if row is not None else None


def _live_room(row: asyncpg.Record | None) -> LiveRoom | None:
    if row is None:
        return None
    return LiveRoom(
        row["id"], row["course_id"], row["room_name"], row["status"], row["auto_record"]
    )


async def create_recording(
    pool: asyncpg.Pool, session_id: uuid.UUID, started_by: uuid.UUID | None
) -> uuid.UUID:
    """A new row in status ``recording``; NotLive / AlreadyRecording otherwise. The
    session row is locked so two starts cannot both pass the checks."""
    async with pool.acquire() as conn, conn.transaction():
        status = await conn.fetchval(
            "SELECT status FROM live_sessions WHERE id = $1 FOR UPDATE", session_id
        )
        if status != "live":
            raise NotLive(str(status))
        busy = await conn.fetchval(
            "SELECT 1 FROM recordings WHERE session_id = $1 AND status = 'recording'",
            session_id,
        )
        if busy:
            raise AlreadyRecording()
        recording_id: uuid.UUID = await conn.fetchval(
            """INSERT INTO recordings (session_id, started_by, status)
               VALUES ($1, $2, 'recording') RETURNING id""",
            session_id,
            started_by,
        )
        return recording_id


async def active_recording(conn: Conn, session_id: uuid.UUID) -> uuid.UUID | None:
    value: uuid.UUID | None = await conn.fetchval(
        """SELECT id FROM recordings WHERE session_id = $1 AND status = 'recording'
           ORDER BY started_at DESC LIMIT 1""",
        session_id,
    )
    return value


async def still_recording(conn: Conn) -> list[uuid.UUID]:
    """Recordings marked as being recorded (at start-up: what a previous run left)."""
    return [
        row["id"]
        for row in await conn.fetch("SELECT id FROM recordings WHERE status = 'recording'")
    ]


async def last_recording(conn: Conn, session_id: uuid.UUID) -> asyncpg.Record | None:
    """The newest recording of a session (``ended_reason``, ``started_by``), None if never."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """SELECT ended_reason, started_by FROM recordings WHERE session_id = $1
           ORDER BY created_at DESC LIMIT 1""",
        session_id,
    )
    return row


async def mark_uploading(
    conn: Conn,
    recording_id: uuid.UUID,
    duration_ms: int | None,
    error: str | None,
    ended_reason: EndedReason,
    cut_at: datetime | None = None,
) -> None:
    """Recording ended (``cut_at``: where a crash cut it, which is also its end)."""
    await conn.execute(
        """UPDATE recordings SET status = 'uploading',
                  ended_at = coalesce($5, ended_at, now()),
                  duration_ms = $2, error = $3, ended_reason = $4, cut_at = $5,
                  updated_at = now()
           WHERE id = $1 AND status IN ('recording', 'uploading', 'failed')""",
        recording_id,
        duration_ms,
        error,
        ended_reason,
        cut_at,
    )


async def note_error(conn: Conn, recording_id: uuid.UUID, error: str, *, failed: bool) -> None:
    """An upload attempt failed: say why (and show ``failed`` after too many tries)."""
    await conn.execute(
        """UPDATE recordings SET error = $2, updated_at = now(),
                  status = CASE WHEN $3 THEN 'failed' ELSE status END
           WHERE id = $1 AND status <> 'available'""",
        recording_id,
        error[:2000],
        failed,
    )


async def mark_available(
    conn: Conn,
    recording_id: uuid.UUID,
    *,
    object_key: str,
    size_bytes: int,
    sha256: str,
    duration_ms: int | None,
) -> bool:
    result: str = await conn.execute(
        """UPDATE recordings SET status = 'available', object_key = $2, size_bytes = $3,
                  sha256 = $4, duration_ms = coalesce($5, duration_ms), error = NULL,
                  ended_at = coalesce(ended_at, now()), updated_at = now()
           WHERE id = $1""",
        recording_id,
        object_key,
        size_bytes,
        sha256,
        duration_ms,
    )
    return result.endswith(" 1")


async def mark_failed(
    conn: Conn, recording_id: uuid.UUID, error: str, ended_reason: EndedReason | None = None
) -> None:
    await conn.execute(
        """UPDATE recordings SET status = 'failed', error = $2,
                  ended_reason = coalesce($3, ended_reason),
                  ended_at = coalesce(ended_at, now()), updated_at = now()
           WHERE id = $1""",
        recording_id,
        error[:2000],
        ended_reason,
    )


async def recording_status(conn: Conn, recording_id: uuid.UUID) -> str | None:
    value: str | None = await conn.fetchval(
        "SELECT status FROM recordings WHERE id = $1", recording_id
    )
    return value
