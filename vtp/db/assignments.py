"""Queries on assignments."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from vtp.db.keyset import Where
from vtp.db.models import Assignment

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

FIELDS = (
    "lesson_id",
    "title",
    "instructions_md",
    "points_possible",
    "status",
    "unlock_at",
    "due_at",
    "lock_at",
    "allowed_attempts",
    "allowed_file_types",
    "max_file_bytes",
)


async def create_assignment(
    conn: Conn, course_id: uuid.UUID, created_by: uuid.UUID, values: dict[str, Any]
) -> Assignment:
    columns = [c for c in FIELDS if c in values]
    slots = ", ".join(f"${i + 3}" for i in range(len(columns)))
    row = await conn.fetchrow(
        f"""INSERT INTO assignments (course_id, created_by, {", ".join(columns)})
            VALUES ($1, $2, {slots}) RETURNING *""",
        course_id,
        created_by,
        *(values[c] for c in columns),
    )
    return Assignment.from_record(row)


async def get_assignment(conn: Conn, assignment_id: uuid.UUID) -> Assignment | None:
    row = await conn.fetchrow("SELECT * FROM assignments WHERE id = $1", assignment_id)
    return Assignment.from_record(row) if row else None


async def update_assignment(
    conn: Conn, assignment_id: uuid.UUID, changes: dict[str, Any]
) -> Assignment | None:
    columns = [c for c in FIELDS if c in changes]
    if not columns:
        return await get_assignment(conn, assignment_id)
    sets = ", ".join(f"{col} = ${i + 2}" for i, col in enumerate(columns))
    row = await conn.fetchrow(
        f"UPDATE assignments SET {sets} WHERE id = $1 RETURNING *",
        assignment_id,
        *(changes[c] for c in columns),
    )
    return Assignment.from_record(row) if row else None


async def delete_assignment_without_submissions(conn: Conn, assignment_id: uuid.UUID) -> bool:
    result = await conn.execute(
        """DELETE FROM assignments a WHERE a.id = $1
           AND NOT EXISTS (SELECT 1 FROM submissions s WHERE s.assignment_id = a.id)""",
        assignment_id,
    )
    return str(result) == "DELETE 1"


async def list_assignments(
    conn: Conn,
    course_id: uuid.UUID,
    *,
    status: str | None,
    due_after: datetime | None,
    due_before: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Assignment]:
    where = Where(course_id)
    where.clauses.append("a.course_id = $1")
    where.add_if(status, "a.status = {}")
    where.add_if(due_after, "a.due_at >= {}")
    where.add_if(due_before, "a.due_at < {}")
    where.after(after, "a")
    limit_sql = where.limit(limit)
    rows = await conn.fetch(
        f"SELECT a.* FROM assignments a {where.sql()} ORDER BY a.created_at, a.id {limit_sql}",
        *where.params,
    )
    return [Assignment.from_record(r) for r in rows]
