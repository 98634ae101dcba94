"""Queries on chats: the course channel (session_id NULL) and live-session chat."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TypeAlias

import asyncpg

from vtp.db.keyset import Where
from vtp.db.models import Chat

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def post(
    conn: Conn,
    course_id: uuid.UUID,
    session_id: uuid.UUID | None,
    author_id: uuid.UUID,
    body: str,
) -> Chat:
    row = await conn.fetchrow(
        """INSERT INTO chats (course_id, session_id, author_id, body)
           VALUES ($1, $2, $3, $4) RETURNING *""",
        course_id,
        session_id,
        author_id,
        body,
    )
    return Chat.from_record(row)


async def get(conn: Conn, message_id: uuid.UUID) -> Chat | None:
    row = await conn.fetchrow("SELECT * FROM chats WHERE id = $1", message_id)
    return Chat.from_record(row) if row else None


async def edit(conn: Conn, message_id: uuid.UUID, body: str) -> Chat | None:
    row = await conn.fetchrow(
        """UPDATE chats SET body = $2, edited_at = now()
           WHERE id = $1 AND deleted_at IS NULL RETURNING *""",
        message_id,
        body,
    )
    return Chat.from_record(row) if row else None


async def delete(conn: Conn, message_id: uuid.UUID) -> Chat | None:
    """Soft delete: the row stays (history keeps its place), the body is hidden."""
    row = await conn.fetchrow(
        """UPDATE chats SET deleted_at = COALESCE(deleted_at, now())
           WHERE id = $1 RETURNING *""",
        message_id,
    )
    return Chat.from_record(row) if row else None


async def history(
    conn: Conn,
    *,
    course_id: uuid.UUID,
    session_id: uuid.UUID | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first; `before` is the cursor of the last message of the previous page."""
    where = Where()
    if session_id is None:
        where.add("c.course_id = {}", course_id)
        where.clauses.append("c.session_id IS NULL")
    else:
        where.add("c.session_id = {}", session_id)
    where.after(before, "c", desc=True)
    limit_sql = where.limit(limit)
    return list(
        await conn.fetch(
            f"""SELECT c.*, u.display_name AS author_name
                FROM chats c LEFT JOIN users u ON u.id = c.author_id
                {where.sql()}
                ORDER BY c.created_at DESC, c.id DESC {limit_sql}""",
            *where.params,
        )
    )
