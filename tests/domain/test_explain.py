"""Every list query uses an index: EXPLAIN on a seeded database of 10,000 students,
500 courses and 100,000 submissions (plus enrollments, sessions, attendance, chat).

The queries are the real ones: each `vtp.db` list function runs against a recording
proxy, and every SELECT it sent is EXPLAINed with the same arguments, twice:

* as the planner chooses: no sequential scan of a large table, except `users` and
  `courses`, which the planner may hash-join when it needs a few dozen of their rows
  (10,200 and 500: cheaper than as many index probes at this size);
* with `enable_seqscan = off`: still no sequential scan of any large table, i.e. an
  index exists for every access path of the query.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest

from vtp.db import assignments, attendance, chat, courses, lessons, recordings, sessions
from vtp.db import submissions as subs

pytestmark = pytest.mark.slow

BIG = {
    "courses",
    "users",
    "course_enrollments",
    "submissions",
    "chats",
    "session_participants",
    "assignments",
    "live_sessions",
    "lessons",
    "recordings",
}

SEED = """
INSERT INTO users (email, display_name, password_hash, role)
SELECT 'u' || g || '@seed.test', 'User ' || g, 'x',
       CASE WHEN g < 200 THEN 'teacher' ELSE 'student' END
FROM generate_series(0, 10199) g;
CREATE TEMP TABLE su AS
    SELECT row_number() OVER (ORDER BY id) - 1 AS n, id FROM users WHERE role = 'student';
CREATE TEMP TABLE tu AS
    SELECT row_number() OVER (ORDER BY id) - 1 AS n, id FROM users WHERE role = 'teacher';
INSERT INTO courses (code, title, owner_id, status, created_at)
SELECT 'C' || g, 'Course ' || g, tu.id,
       CASE WHEN g % 10 = 0 THEN 'archived' ELSE 'active' END,
       now() - (g || ' minutes')::interval
FROM generate_series(0, 499) g JOIN tu ON tu.n = g % 200;
CREATE TEMP TABLE cc AS SELECT row_number() OVER (ORDER BY id) - 1 AS n, id, owner_id FROM courses;
INSERT INTO course_enrollments (course_id, user_id, role)
SELECT cc.id, cc.owner_id, 'teacher' FROM cc;
INSERT INTO course_enrollments (course_id, user_id, role)
SELECT cc.id, su.id, 'student' FROM su JOIN cc ON cc.n = su.n % 500
UNION ALL
SELECT cc.id, su.id, 'student' FROM su JOIN cc ON cc.n = (su.n * 7 + 3) % 500
ON CONFLICT DO NOTHING;
INSERT INTO lessons (course_id, position, title, status)
SELECT cc.id, p, 'Lesson ' || p, 'published' FROM cc, generate_series(0, 9) p;
INSERT INTO assignments (course_id, title, status, due_at)
SELECT cc.id, 'A' || p, 'published', now() + (p || ' days')::interval
FROM cc, generate_series(0, 9) p;
CREATE TEMP TABLE aa AS SELECT row_number() OVER (ORDER BY id) - 1 AS n, id FROM assignments;
INSERT INTO submissions (assignment_id, student_id, attempt, status, body_text,
                         submitted_at, score)
SELECT aa.id, su.id, 1, (ARRAY['submitted', 'graded', 'returned', 'draft'])[1 + g % 4], 'x',
       now(), CASE WHEN g % 4 IN (1, 2) THEN 5 END
FROM generate_series(0, 99999) g
JOIN aa ON aa.n = g % 5000
JOIN su ON su.n = ((g % 5000) * 20 + g / 5000) % 10000;
INSERT INTO live_sessions (course_id, host_id, title, status, scheduled_start, scheduled_end,
                           started_at, ended_at)
SELECT cc.id, cc.owner_id, 'S' || p, 'ended', now() - interval '2 hours',
       now() - interval '1 hour', now() - interval '2 hours', now() - interval '1 hour'
FROM cc, generate_series(0, 4) p;
CREATE TEMP TABLE ss AS SELECT row_number() OVER (ORDER BY id) - 1 AS n, id FROM live_sessions;
INSERT INTO session_participants (session_id, user_id, joined_at, left_at)
SELECT ss.id, su.id, now() - interval '2 hours', now() - interval '1 hour'
FROM generate_series(0, 49999) g JOIN ss ON ss.n = g % 2500 JOIN su ON su.n = g % 10000;
INSERT INTO recordings (session_id, status) SELECT id, 'available' FROM live_sessions;
INSERT INTO chats (course_id, session_id, author_id, body, created_at)
SELECT cc.id, CASE WHEN g % 2 = 0 THEN NULL ELSE ss.id END, su.id, 'hello',
       now() - (g || ' seconds')::interval
FROM generate_series(0, 49999) g
JOIN cc ON cc.n = g % 500 JOIN ss ON ss.n = g % 2500 JOIN su ON su.n = g % 10000;
ANALYZE;
"""


class Recorder:
    """Delegates to a connection and remembers every statement sent."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, sql: str, *args: Any) -> Any:
        self.sent.append((sql, args))
        return await self.conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        self.sent.append((sql, args))
        return await self.conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.sent.append((sql, args))
        return await self.conn.fetchval(sql, *args)


def seq_scans(plan: dict[str, Any]) -> list[str]:
    found = []
    if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") in BIG:
        found.append(plan["Relation Name"])
    for child in plan.get("Plans", []):
        found += seq_scans(child)
    return found


async def plan_scans(db: asyncpg.Connection, sql: str, args: tuple[Any, ...]) -> list[str]:
    raw = await db.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    return seq_scans((json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"])


async def test_list_queries_use_indexes(db: asyncpg.Connection) -> None:
    await db.execute(SEED)
    assert await db.fetchval("SELECT count(*) FROM submissions") == 100_000
    assert await db.fetchval("SELECT count(*) FROM users WHERE role = 'student'") == 10_000
    course = await db.fetchrow("SELECT id, owner_id FROM courses WHERE status = 'active' LIMIT 1")
    cid, owner = course["id"], course["owner_id"]
    student = await db.fetchval(
        "SELECT user_id FROM course_enrollments WHERE course_id = $1 AND role = 'student' LIMIT 1",
        cid,
    )
    aid = await db.fetchval("SELECT id FROM assignments WHERE course_id = $1 LIMIT 1", cid)
    sid = await db.fetchval("SELECT id FROM live_sessions WHERE course_id = $1 LIMIT 1", cid)
    rec = Recorder(db)
    page = {"after": None, "limit": 50}
    calls: dict[str, Any] = {
        "my courses": courses.list_courses(
            rec, user_id=student, scope="mine", status=None, q=None, **page
        ),
        "catalogue": courses.list_courses(
            rec, user_id=student, scope="catalogue", status=None, q=None, **page
        ),
        "roster": courses.roster(rec, cid, role="student", status="active", **page),
        "sessions": sessions.list_sessions(
            rec, cid, status=None, starts_after=None, starts_before=None, **page
        ),
        "attendance": attendance.attendance(rec, sid),
        "join ticket": sessions.join_ticket(rec, user_id=student, is_admin=False, session_id=sid),
        "assignments": assignments.list_assignments(
            rec, cid, status="published", due_after=None, due_before=None, **page
        ),
        "submissions": subs.list_submissions(rec, aid, student_id=None, statuses=None, **page),
        "own submissions": subs.list_submissions(
            rec, aid, student_id=student, statuses=None, **page
        ),
        "attempts": subs.student_attempts(rec, aid, student),
        "gradebook": subs.gradebook(rec, cid, student_id=None, returned_only=False),
        "my grades": subs.gradebook(rec, cid, student_id=student, returned_only=True),
        "lessons": lessons.list_lessons(
            rec, cid, status="published", after_position=None, limit=50
        ),
        "course chat": chat.history(rec, course_id=cid, session_id=None, before=None, limit=50),
        "session chat": chat.history(rec, course_id=cid, session_id=sid, before=None, limit=50),
        "course recordings": recordings.list_recordings(
            rec, course_id=cid, session_id=None, status=None, **page
        ),
        "session recordings": recordings.list_recordings(
            rec, course_id=None, session_id=sid, status=None, **page
        ),
    }
    failures: dict[str, list[str]] = {}
    for name, call in calls.items():
        rec.sent.clear()
        await call
        assert rec.sent, name
        for sql, args in rec.sent:
            if not sql.lstrip().upper().startswith("SELECT") or sql.strip()[7:] == "now()":
                continue
            natural = [t for t in await plan_scans(db, sql, args) if t not in ("users", "courses")]
            await db.execute("SET enable_seqscan = off")
            try:
                forced = await plan_scans(db, sql, args)
            finally:
                await db.execute("RESET enable_seqscan")
            if natural or forced:
                failures[name] = natural + [f"{t} (no index)" for t in forced]
    assert failures == {}, failures
    assert owner is not None and isinstance(cid, uuid.UUID)
