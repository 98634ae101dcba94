"""Queries on submissions: attempts, the draft -> submitted -> graded -> returned
states, files, grades and the course gradebook."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeAlias

import asyncpg

from vtp.db.keyset import Where
from vtp.db.models import Submission

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def get_submission(conn: Conn, submission_id: uuid.UUID) -> Submission | None:
    row = await conn.fetchrow("SELECT * FROM submissions WHERE id = $1", submission_id)
    return Submission.from_record(row) if row else None


async def lock_submission(conn: asyncpg.Connection, submission_id: uuid.UUID) -> Submission | None:
    row = await conn.fetchrow("SELECT * FROM submissions WHERE id = $1 FOR UPDATE", submission_id)
    return Submission.from_record(row) if row else None


async def student_attempts(
    conn: Conn, assignment_id: uuid.UUID, student_id: uuid.UUID
) -> list[Submission]:
    rows = await conn.fetch(
        """SELECT * FROM submissions WHERE assignment_id = $1 AND student_id = $2
           ORDER BY attempt""",
        assignment_id,
        student_id,
    )
    return [Submission.from_record(r) for r in rows]


async def create_attempt(
    conn: asyncpg.Connection,
    assignment_id: uuid.UUID,
    student_id: uuid.UUID,
    attempt: int,
    body_text: str,
) -> Submission:
    row = await conn.fetchrow(
        """INSERT INTO submissions (assignment_id, student_id, attempt, body_text)
           VALUES ($1, $2, $3, $4) RETURNING *""",
        assignment_id,
        student_id,
        attempt,
        body_text,
    )
    return Submission.from_record(row)


async def set_body(conn: Conn, submission_id: uuid.UUID, body_text: str) -> Submission | None:
    row = await conn.fetchrow(
        """UPDATE submissions SET body_text = $2
           WHERE id = $1 AND status = 'draft' RETURNING *""",
        submission_id,
        body_text,
    )
    return Submission.from_record(row) if row else None


async def set_files(
    conn: Conn, submission_id: uuid.UUID, files: list[dict[str, Any]]
) -> Submission | None:
    row = await conn.fetchrow(
        "UPDATE submissions SET files = $2 WHERE id = $1 AND status = 'draft' RETURNING *",
        submission_id,
        files,
    )
    return Submission.from_record(row) if row else None


async def submit(conn: Conn, submission_id: uuid.UUID) -> Submission | None:
    """draft -> submitted, stamping the time and the late flag from the due date."""
    row = await conn.fetchrow(
        """UPDATE submissions s
           SET status = 'submitted', submitted_at = now(),
               is_late = (a.due_at IS NOT NULL AND now() > a.due_at)
           FROM assignments a
           WHERE s.id = $1 AND s.status = 'draft' AND a.id = s.assignment_id
           RETURNING s.*""",
        submission_id,
    )
    return Submission.from_record(row) if row else None


async def grade(
    conn: Conn,
    submission_id: uuid.UUID,
    *,
    score: Decimal,
    feedback: str | None,
    graded_by: uuid.UUID,
    return_now: bool,
) -> Submission | None:
    """Grade a submitted/graded/returned submission; a returned one stays returned."""
    row = await conn.fetchrow(
        """UPDATE submissions
           SET score = $2, feedback = $3, graded_by = $4, graded_at = now(),
               status = CASE WHEN $5 OR status = 'returned' THEN 'returned' ELSE 'graded' END
           WHERE id = $1 AND status IN ('submitted', 'graded', 'returned')
           RETURNING *""",
        submission_id,
        score,
        feedback,
        graded_by,
        return_now,
    )
    return Submission.from_record(row) if row else None


async def return_graded(conn: Conn, submission_id: uuid.UUID) -> Submission | None:
    row = await conn.fetchrow(
        """UPDATE submissions SET status = 'returned'
           WHERE id = $1 AND status = 'graded' RETURNING *""",
        submission_id,
    )
    return Submission.from_record(row) if row else None


async def list_submissions(
    conn: Conn,
    assignment_id: uuid.UUID,
    *,
    student_id: uuid.UUID | None,
    statuses: list[str] | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    where = Where(assignment_id)
    where.clauses.append("s.assignment_id = $1")
    where.add_if(student_id, "s.student_id = {}")
    where.add_if(statuses, "s.status = ANY({}::text[])")
    where.after(after, "s")
    limit_sql = where.limit(limit)
    return list(
        await conn.fetch(
            f"""SELECT s.*, u.display_name AS student_name
                FROM submissions s JOIN users u ON u.id = s.student_id
                {where.sql()} ORDER BY s.created_at, s.id {limit_sql}""",
            *where.params,
        )
    )


async def gradebook(
    conn: Conn, course_id: uuid.UUID, *, student_id: uuid.UUID | None, returned_only: bool
) -> tuple[list[asyncpg.Record], list[asyncpg.Record], list[asyncpg.Record]]:
    """(assignments, students, grades): a grade is the newest graded attempt of a student
    for an assignment."""
    assignments = await conn.fetch(
        """SELECT id, title, points_possible, status, due_at FROM assignments
           WHERE course_id = $1 AND ($2 OR status = 'published')
           ORDER BY created_at, id""",
        course_id,
        not returned_only,
    )
    students = await conn.fetch(
        """SELECT u.id, u.display_name, u.email FROM course_enrollments e
           JOIN users u ON u.id = e.user_id
           WHERE e.course_id = $1 AND e.role = 'student' AND e.status = 'active'
             AND ($2::uuid IS NULL OR u.id = $2)
           ORDER BY u.display_name, u.id""",
        course_id,
        student_id,
    )
    statuses = ["returned"] if returned_only else ["graded", "returned"]
    grades = await conn.fetch(
        """SELECT DISTINCT ON (s.assignment_id, s.student_id)
                  s.assignment_id, s.student_id, s.score, s.status, s.attempt, s.is_late
           FROM submissions s JOIN assignments a ON a.id = s.assignment_id
           WHERE a.course_id = $1 AND s.status = ANY($2::text[])
             AND ($3::uuid IS NULL OR s.student_id = $3)
           ORDER BY s.assignment_id, s.student_id, s.attempt DESC""",
        course_id,
        statuses,
        student_id,
    )
    return list(assignments), list(students), list(grades)


def files_json(value: Any) -> list[dict[str, Any]]:
    return list(json.loads(value)) if isinstance(value, str) else list(value)
