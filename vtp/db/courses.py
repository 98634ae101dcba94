"""Queries on courses and course_enrollments."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from vtp.db.models import Course, CourseEnrollment

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


class CourseCodeTaken(Exception):
    pass


class EnrollmentCodeTaken(Exception):
    pass


def _unique(exc: asyncpg.UniqueViolationError) -> Exception:
    if exc.constraint_name == "courses_enrollment_code_key":
        return EnrollmentCodeTaken()
    return CourseCodeTaken()


async def create_course(
    conn: asyncpg.Connection,
    *,
    owner_id: uuid.UUID,
    code: str,
    title: str,
    description: str,
    status: str,
    enrollment_code: str | None,
) -> Course:
    """Create the course and enrol its owner as teacher (call inside a transaction)."""
    try:
        row = await conn.fetchrow(
            """INSERT INTO courses (owner_id, code, title, description, status, enrollment_code)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
            owner_id,
            code,
            title,
            description,
            status,
            enrollment_code,
        )
    except asyncpg.UniqueViolationError as exc:
        raise _unique(exc) from exc
    assert row is not None
    await conn.execute(
        "INSERT INTO course_enrollments (course_id, user_id, role) VALUES ($1, $2, 'teacher')",
        row["id"],
        owner_id,
    )
    return Course.from_record(row)


async def update_course(conn: Conn, course_id: uuid.UUID, changes: dict[str, Any]) -> Course | None:
    if not changes:
        row = await conn.fetchrow("SELECT * FROM courses WHERE id = $1", course_id)
        return Course.from_record(row) if row else None
    columns = list(changes)
    sets = ", ".join(f"{col} = ${i + 2}" for i, col in enumerate(columns))
    try:
        row = await conn.fetchrow(
            f"UPDATE courses SET {sets} WHERE id = $1 RETURNING *",
            course_id,
            *(changes[c] for c in columns),
        )
    except asyncpg.UniqueViolationError as exc:
        raise _unique(exc) from exc
    return Course.from_record(row) if row else None


async def list_courses(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    scope: str,
    status: str | None,
    q: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Courses with the caller's role (`my_role`), ordered by (created_at, id).

    scope "mine": owned or actively enrolled; "catalogue": active courses; "all": every
    course (the route allows it to admins only)."""
    params: list[Any] = [user_id]
    where: list[str] = []
    if scope == "mine":
        where.append(
            """c.id IN (SELECT m.course_id FROM course_enrollments m
                        WHERE m.user_id = $1 AND m.status = 'active'
                        UNION ALL
                        SELECT o.id FROM courses o WHERE o.owner_id = $1)"""
        )
    elif scope == "catalogue":
        where.append("c.status = 'active'")
    if status is not None:
        params.append(status)
        where.append(f"c.status = ${len(params)}")
    if q:
        params.append("%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        where.append(f"(c.title ILIKE ${len(params)} OR c.code ILIKE ${len(params)})")
    if after is not None:
        params.extend(after)
        where.append(f"(c.created_at, c.id) > (${len(params) - 1}, ${len(params)})")
    params.append(limit + 1)
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    return list(
        await conn.fetch(
            f"""SELECT c.*,
                   CASE WHEN c.owner_id = $1 THEN 'teacher' ELSE e.role END AS my_role
            FROM courses c
            LEFT JOIN course_enrollments e
                   ON e.course_id = c.id AND e.user_id = $1 AND e.status = 'active'
            {clause}
            ORDER BY c.created_at, c.id
            LIMIT ${len(params)}""",
            *params,
        )
    )


async def get_course_by_enrollment_code(conn: Conn, code: str) -> Course | None:
    row = await conn.fetchrow("SELECT * FROM courses WHERE enrollment_code = $1", code)
    return Course.from_record(row) if row else None


async def enroll(
    conn: asyncpg.Connection,
    course_id: uuid.UUID,
    user_id: uuid.UUID,
    role: str,
    *,
    by_teacher: bool = True,
) -> tuple[CourseEnrollment, bool]:
    """Enrol, or re-activate an enrollment that is not active. Returns (row,
    created_or_changed); an already active enrollment is returned unchanged with False.

    A teacher (``by_teacher``) re-activates any enrollment: that is how a request to come
    back is approved. A self-enrolment (the code) re-activates only one its user dropped
    themself; one a teacher removed becomes a ``requested`` enrollment instead."""
    row = await conn.fetchrow(
        """INSERT INTO course_enrollments (course_id, user_id, role)
           VALUES ($1, $2, $3)
           ON CONFLICT (course_id, user_id) DO UPDATE
               SET role = EXCLUDED.role,
                   status = CASE WHEN $4 OR course_enrollments.status = 'dropped'
                                 THEN 'active' ELSE 'requested' END
               WHERE course_enrollments.status <> 'active'
                 AND ($4 OR course_enrollments.status <> 'requested')
           RETURNING *""",
        course_id,
        user_id,
        role,
        by_teacher,
    )
    if row is not None:
        return CourseEnrollment.from_record(row), True
    existing = await conn.fetchrow(
        "SELECT * FROM course_enrollments WHERE course_id = $1 AND user_id = $2",
        course_id,
        user_id,
    )
    assert existing is not None
    return CourseEnrollment.from_record(existing), False


async def get_enrollment(
    conn: Conn, course_id: uuid.UUID, user_id: uuid.UUID
) -> CourseEnrollment | None:
    row = await conn.fetchrow(
        "SELECT * FROM course_enrollments WHERE course_id = $1 AND user_id = $2",
        course_id,
        user_id,
    )
    return CourseEnrollment.from_record(row) if row else None


async def set_enrollment(
    conn: Conn, course_id: uuid.UUID, user_id: uuid.UUID, *, role: str | None, status: str | None
) -> CourseEnrollment | None:
    row = await conn.fetchrow(
        """UPDATE course_enrollments
           SET role = COALESCE($3, role), status = COALESCE($4, status)
           WHERE course_id = $1 AND user_id = $2 RETURNING *""",
        course_id,
        user_id,
        role,
        status,
    )
    return CourseEnrollment.from_record(row) if row else None


async def roster(
    conn: Conn,
    course_id: uuid.UUID,
    *,
    role: str | None,
    status: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    params: list[Any] = [course_id]
    where = ["e.course_id = $1"]
    if role is not None:
        params.append(role)
        where.append(f"e.role = ${len(params)}")
    if status is not None:
        params.append(status)
        where.append(f"e.status = ${len(params)}")
    if after is not None:
        params.extend(after)
        where.append(f"(e.created_at, e.id) > (${len(params) - 1}, ${len(params)})")
    params.append(limit + 1)
    return list(
        await conn.fetch(
            f"""SELECT e.*, u.display_name, u.email
            FROM course_enrollments e JOIN users u ON u.id = e.user_id
            WHERE {" AND ".join(where)}
            ORDER BY e.created_at, e.id
            LIMIT ${len(params)}""",
            *params,
        )
    )
