"""Queries on lessons: ordered by a contiguous 0-based `position` within a course."""

from __future__ import annotations

import uuid
from typing import Any, TypeAlias

import asyncpg

from vtp.db.models import Lesson

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def lock_course_lessons(conn: asyncpg.Connection, course_id: uuid.UUID) -> None:
    """Serialise position changes in one course (call inside a transaction)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"lessons:{course_id}")
    await conn.execute("SET CONSTRAINTS lessons_course_position_key DEFERRED")


async def count(conn: Conn, course_id: uuid.UUID) -> int:
    value = await conn.fetchval("SELECT count(*) FROM lessons WHERE course_id = $1", course_id)
    return int(value)


async def create_lesson(
    conn: asyncpg.Connection,
    course_id: uuid.UUID,
    *,
    position: int | None,
    title: str,
    content_md: str,
    status: str,
) -> Lesson:
    """Insert at `position` (shifting the later ones) or at the end."""
    await lock_course_lessons(conn, course_id)
    total = await count(conn, course_id)
    pos = total if position is None else min(position, total)
    await conn.execute(
        "UPDATE lessons SET position = position + 1 WHERE course_id = $1 AND position >= $2",
        course_id,
        pos,
    )
    row = await conn.fetchrow(
        """INSERT INTO lessons (course_id, position, title, content_md, status, published_at)
           VALUES ($1, $2, $3, $4, $5, CASE WHEN $5 = 'published' THEN now() END)
           RETURNING *""",
        course_id,
        pos,
        title,
        content_md,
        status,
    )
    return Lesson.from_record(row)


async def get_lesson(conn: Conn, lesson_id: uuid.UUID) -> Lesson | None:
    row = await conn.fetchrow("SELECT * FROM lessons WHERE id = $1", lesson_id)
    return Lesson.from_record(row) if row else None


async def lock_lesson(conn: asyncpg.Connection, lesson_id: uuid.UUID) -> Lesson | None:
    row = await conn.fetchrow("SELECT * FROM lessons WHERE id = $1 FOR UPDATE", lesson_id)
    return Lesson.from_record(row) if row else None


async def update_lesson(
    conn: asyncpg.Connection, lesson: Lesson, changes: dict[str, Any]
) -> Lesson:
    if "position" in changes:
        await lock_course_lessons(conn, lesson.course_id)
        total = await count(conn, lesson.course_id)
        new = min(int(changes.pop("position")), total - 1)
        current = await conn.fetchval("SELECT position FROM lessons WHERE id = $1", lesson.id)
        if new < current:
            await conn.execute(
                """UPDATE lessons SET position = position + 1
                   WHERE course_id = $1 AND position >= $2 AND position < $3""",
                lesson.course_id,
                new,
                current,
            )
        elif new > current:
            await conn.execute(
                """UPDATE lessons SET position = position - 1
                   WHERE course_id = $1 AND position > $2 AND position <= $3""",
                lesson.course_id,
                current,
                new,
            )
        changes["position"] = new
    columns = [c for c in ("title", "content_md", "status", "position") if c in changes]
    sets = [f"{col} = ${i + 2}" for i, col in enumerate(columns)]
    if changes.get("status") == "published":
        sets.append("published_at = COALESCE(published_at, now())")
    row = await conn.fetchrow(
        f"UPDATE lessons SET {', '.join(sets) or 'title = title'} WHERE id = $1 RETURNING *",
        lesson.id,
        *(changes[c] for c in columns),
    )
    return Lesson.from_record(row)


async def delete_lesson(conn: asyncpg.Connection, lesson: Lesson) -> None:
    await lock_course_lessons(conn, lesson.course_id)
    position = await conn.fetchval(
        "DELETE FROM lessons WHERE id = $1 RETURNING position", lesson.id
    )
    if position is not None:
        await conn.execute(
            "UPDATE lessons SET position = position - 1 WHERE course_id = $1 AND position > $2",
            lesson.course_id,
            position,
        )


async def set_attachments(
    conn: Conn, lesson_id: uuid.UUID, attachments: list[dict[str, Any]]
) -> Lesson | None:
    row = await conn.fetchrow(
        "UPDATE lessons SET attachments = $2 WHERE id = $1 RETURNING *", lesson_id, attachments
    )
    return Lesson.from_record(row) if row else None


async def list_lessons(
    conn: Conn,
    course_id: uuid.UUID,
    *,
    status: str | None,
    after_position: int | None,
    limit: int,
) -> list[Lesson]:
    rows = await conn.fetch(
        """SELECT * FROM lessons
           WHERE course_id = $1 AND ($2::text IS NULL OR status = $2)
             AND ($3::int IS NULL OR position > $3)
           ORDER BY position LIMIT $4""",
        course_id,
        status,
        after_position,
        limit + 1,
    )
    return [Lesson.from_record(r) for r in rows]
