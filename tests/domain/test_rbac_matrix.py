"""The RBAC matrix: every teaching-domain route, called by every role, answers exactly
the expected status code.

Roles: anonymous (no token), the course's student, a student of another course, the
course's TA, the course's teacher (its owner), a site admin, and the course's observer.
Each call runs against a fresh course (and fresh resources inside it), so a call that
succeeds cannot change what the next role sees. A second test checks that the matrix
covers every route.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from domain_helpers import Actor, World, check_response

from vtp.api.teaching_routes import ROUTE_TABLES

ROLES = ("anonymous", "student", "other", "ta", "teacher", "admin", "observer")
PDF = b"%PDF-1.4\n%%EOF\n"


def expect(
    student: int, other: int, ta: int, teacher: int, admin: int, observer: int
) -> dict[str, int]:
    return {
        "anonymous": 401,
        "student": student,
        "other": other,
        "ta": ta,
        "teacher": teacher,
        "admin": admin,
        "observer": observer,
    }


READ = expect(200, 404, 200, 200, 200, 200)  # any member of the course
STAFF_READ = expect(403, 404, 200, 200, 200, 403)
STAFF_WRITE = expect(403, 404, 200, 200, 200, 403)
STAFF_CREATE = expect(403, 404, 201, 201, 201, 403)
STAFF_DELETE = expect(403, 404, 204, 204, 204, 403)
TEACHER_WRITE = expect(403, 404, 403, 200, 200, 403)
# A student's submission: only its student and staff see it (404 to everyone else).
SUBMISSION_READ = expect(200, 404, 200, 200, 200, 404)
SUBMISSION_AUTHOR = expect(200, 404, 403, 403, 403, 404)
SUBMISSION_STAFF = expect(403, 404, 200, 200, 200, 404)
MESSAGE_AUTHOR = expect(200, 404, 403, 403, 403, 403)  # a student's chat message


class Fx:
    """Creates fresh rows straight in SQL (fast), or through the API where a file in the
    object store is needed."""

    def __init__(self, world: World, db: asyncpg.Connection) -> None:
        self.world = world
        self.db = db

    async def course(self, status: str = "active") -> uuid.UUID:
        w = self.world
        cid: uuid.UUID = await self.db.fetchval(
            """INSERT INTO courses (code, title, owner_id, status, enrollment_code)
               VALUES ($1, 'Matrix', $2, $3, $4) RETURNING id""",
            "M-" + uuid.uuid4().hex[:10],
            uuid.UUID(w.teacher.user_id),
            status,
            "CODE-" + uuid.uuid4().hex[:10],
        )
        for who, role in [
            (w.teacher, "teacher"),
            (w.ta, "ta"),
            (w.student, "student"),
            (w.observer, "observer"),
        ]:
            await self.db.execute(
                "INSERT INTO course_enrollments (course_id, user_id, role) VALUES ($1, $2, $3)",
                cid,
                uuid.UUID(who.user_id),
                role,
            )
        return cid

    async def session(self, cid: uuid.UUID, status: str = "scheduled") -> uuid.UUID:
        sid: uuid.UUID = await self.db.fetchval(
            """INSERT INTO live_sessions (course_id, host_id, title, status, scheduled_start,
                                          scheduled_end, started_at)
               VALUES ($1, $2, 'S', $3, now(), now() + interval '1 hour',
                       CASE WHEN $3 = 'live' THEN now() END)
               RETURNING id""",
            cid,
            uuid.UUID(self.world.teacher.user_id),
            status,
        )
        return sid

    async def assignment(self, cid: uuid.UUID) -> uuid.UUID:
        aid: uuid.UUID = await self.db.fetchval(
            """INSERT INTO assignments (course_id, title, status, points_possible)
               VALUES ($1, 'A', 'published', 10) RETURNING id""",
            cid,
        )
        return aid

    async def submission(self, aid: uuid.UUID, status: str = "draft") -> uuid.UUID:
        sub: uuid.UUID = await self.db.fetchval(
            """INSERT INTO submissions (assignment_id, student_id, status, body_text,
                                        submitted_at, score)
               VALUES ($1, $2, $3, 'text', CASE WHEN $3 <> 'draft' THEN now() END,
                       CASE WHEN $3 = 'graded' THEN 5 END)
               RETURNING id""",
            aid,
            uuid.UUID(self.world.student.user_id),
            status,
        )
        return sub

    async def lesson(self, cid: uuid.UUID) -> uuid.UUID:
        lid: uuid.UUID = await self.db.fetchval(
            """INSERT INTO lessons (course_id, position, title, status)
               VALUES ($1, 0, 'L', 'published') RETURNING id""",
            cid,
        )
        return lid

    async def message(self, cid: uuid.UUID) -> uuid.UUID:
        mid: uuid.UUID = await self.db.fetchval(
            "INSERT INTO chats (course_id, author_id, body) VALUES ($1, $2, 'hi') RETURNING id",
            cid,
            uuid.UUID(self.world.student.user_id),
        )
        return mid

    async def recording(self, sid: uuid.UUID) -> uuid.UUID:
        rid: uuid.UUID = await self.db.fetchval(
            "INSERT INTO recordings (session_id, status) VALUES ($1, 'available') RETURNING id",
            sid,
        )
        return rid

    async def upload(self, url: str, who: Actor) -> str:
        resp = await self.world.client.post(
            url, params={"filename": "f.pdf"}, data=PDF, headers=who.headers
        )
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        return str(body["id"])


Setup = Callable[[Fx, uuid.UUID], Awaitable[dict[str, Any]]]


async def no_setup(fx: Fx, cid: uuid.UUID) -> dict[str, Any]:
    return {}


@dataclass
class Case:
    method: str
    path: str
    expected: dict[str, int]
    setup: Setup = no_setup
    body: Callable[[Fx, dict[str, Any]], Any] | None = None
    raw: bytes | None = None
    course_status: str = "active"
    note: str = field(default="")


def with_(**factories: Callable[[Fx, uuid.UUID, dict[str, Any]], Awaitable[Any]]) -> Setup:
    """Build path parameters in order; each factory sees those built before it."""

    async def setup(fx: Fx, cid: uuid.UUID) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for name, factory in factories.items():
            params[name] = await factory(fx, cid, params)
        return params

    return setup


async def scheduled(fx: Fx, cid: uuid.UUID, p: dict[str, Any]) -> uuid.UUID:
    return await fx.session(cid)


async def live(fx: Fx, cid: uuid.UUID, p: dict[str, Any]) -> uuid.UUID:
    return await fx.session(cid, "live")


async def assignment(fx: Fx, cid: uuid.UUID, p: dict[str, Any]) -> uuid.UUID:
    return await fx.assignment(cid)


def submission(status: str) -> Callable[[Fx, uuid.UUID, dict[str, Any]], Awaitable[Any]]:
    async def make(fx: Fx, cid: uuid.UUID, p: dict[str, Any]) -> uuid.UUID:
        return await fx.submission(p["assignment_id"], status)

    return make


async def submission_file(fx: Fx, cid: uuid.UUID, p: dict[str, Any]) -> str:
    return await fx.upload(f"/api/v1/submissions/{p['submission_id']}/files", fx.world.student)


async def lesson(fx: Fx, cid: uuid.UUID, p: dict[str, Any]) -> uuid.UUID:
    return await fx.lesson(cid)


async def lesson_file(fx: Fx, cid: uuid.UUID, p: dict[str, Any]) -> str:
    return await fx.upload(f"/api/v1/lessons/{p['lesson_id']}/attachments", fx.world.teacher)


async def message(fx: Fx, cid: uuid.UUID, p: dict[str, Any]) -> uuid.UUID:
    return await fx.message(cid)


async def recording(fx: Fx, cid: uuid.UUID, p: dict[str, Any]) -> uuid.UUID:
    return await fx.recording(await fx.session(cid, "ended"))


def user(name: str) -> Callable[[Fx, uuid.UUID, dict[str, Any]], Awaitable[Any]]:
    async def pick(fx: Fx, cid: uuid.UUID, p: dict[str, Any]) -> str:
        return str(getattr(fx.world, name).user_id)

    return pick


async def enrollment_code(fx: Fx, cid: uuid.UUID, p: dict[str, Any]) -> str:
    return str(await fx.db.fetchval("SELECT enrollment_code FROM courses WHERE id = $1", cid))


START = {"scheduled_start": "2030-01-01T09:00:00Z", "scheduled_end": "2030-01-01T10:00:00Z"}

CASES: list[Case] = [
    # courses
    Case(
        "POST",
        "/api/v1/courses",
        expect(403, 403, 403, 201, 201, 403),
        body=lambda fx, p: {"code": "N-" + uuid.uuid4().hex[:8], "title": "New"},
    ),
    Case("GET", "/api/v1/courses", expect(200, 200, 200, 200, 200, 200)),
    Case("GET", "/api/v1/courses/{course_id}", expect(200, 200, 200, 200, 200, 200)),
    Case(
        "GET",
        "/api/v1/courses/{course_id}",
        READ,
        course_status="draft",
        note="a draft course is invisible to non-members",
    ),
    Case("PATCH", "/api/v1/courses/{course_id}", TEACHER_WRITE, body=lambda fx, p: {"title": "X"}),
    Case("POST", "/api/v1/courses/{course_id}/archive", TEACHER_WRITE),
    Case("POST", "/api/v1/courses/{course_id}/enrollment-code", TEACHER_WRITE),
    Case(
        "POST",
        "/api/v1/enrollments/join",
        expect(409, 201, 409, 409, 201, 409),
        setup=with_(code=enrollment_code),
        body=lambda fx, p: {"enrollment_code": p["code"]},
    ),
    Case("GET", "/api/v1/courses/{course_id}/enrollments", READ),
    Case(
        "POST",
        "/api/v1/courses/{course_id}/enrollments",
        expect(403, 404, 403, 201, 201, 403),
        body=lambda fx, p: {"user_id": fx.world.outsider.user_id},
    ),
    Case(
        "PATCH",
        "/api/v1/courses/{course_id}/enrollments/{user_id}",
        TEACHER_WRITE,
        setup=with_(user_id=user("observer")),
        body=lambda fx, p: {"role": "student"},
    ),
    Case(
        "DELETE",
        "/api/v1/courses/{course_id}/enrollments/{user_id}",
        expect(403, 404, 403, 204, 204, 204),
        setup=with_(user_id=user("observer")),
    ),
    # live sessions and attendance
    Case(
        "POST",
        "/api/v1/courses/{course_id}/sessions",
        STAFF_CREATE,
        body=lambda fx, p: {"title": "S", **START},
    ),
    Case("GET", "/api/v1/courses/{course_id}/sessions", READ),
    Case("GET", "/api/v1/sessions/{session_id}", READ, setup=with_(session_id=scheduled)),
    Case(
        "PATCH",
        "/api/v1/sessions/{session_id}",
        STAFF_WRITE,
        setup=with_(session_id=scheduled),
        body=lambda fx, p: {"title": "T"},
    ),
    Case("POST", "/api/v1/sessions/{session_id}/start", STAFF_WRITE, with_(session_id=scheduled)),
    Case("POST", "/api/v1/sessions/{session_id}/end", STAFF_WRITE, with_(session_id=live)),
    Case("POST", "/api/v1/sessions/{session_id}/cancel", STAFF_WRITE, with_(session_id=scheduled)),
    Case("POST", "/api/v1/sessions/{session_id}/join", READ, with_(session_id=live)),
    Case("GET", "/api/v1/sessions/{session_id}/attendance", STAFF_READ, with_(session_id=live)),
    Case("GET", "/api/v1/sessions/{session_id}/attendance.csv", STAFF_READ, with_(session_id=live)),
    # assignments
    Case(
        "POST",
        "/api/v1/courses/{course_id}/assignments",
        STAFF_CREATE,
        body=lambda fx, p: {"title": "A"},
    ),
    Case("GET", "/api/v1/courses/{course_id}/assignments", READ),
    Case("GET", "/api/v1/assignments/{assignment_id}", READ, with_(assignment_id=assignment)),
    Case(
        "PATCH",
        "/api/v1/assignments/{assignment_id}",
        STAFF_WRITE,
        with_(assignment_id=assignment),
        body=lambda fx, p: {"title": "B"},
    ),
    Case(
        "DELETE",
        "/api/v1/assignments/{assignment_id}",
        STAFF_DELETE,
        with_(assignment_id=assignment),
    ),
    # submissions
    Case(
        "POST",
        "/api/v1/assignments/{assignment_id}/submissions",
        expect(201, 404, 403, 403, 403, 403),
        with_(assignment_id=assignment),
        body=lambda fx, p: {"body_text": "answer"},
    ),
    Case(
        "GET",
        "/api/v1/assignments/{assignment_id}/submissions",
        expect(200, 404, 200, 200, 200, 403),
        with_(assignment_id=assignment, submission_id=submission("submitted")),
    ),
    Case(
        "GET",
        "/api/v1/submissions/{submission_id}",
        SUBMISSION_READ,
        with_(assignment_id=assignment, submission_id=submission("submitted")),
    ),
    Case(
        "PATCH",
        "/api/v1/submissions/{submission_id}",
        SUBMISSION_AUTHOR,
        with_(assignment_id=assignment, submission_id=submission("draft")),
        body=lambda fx, p: {"body_text": "better"},
    ),
    Case(
        "POST",
        "/api/v1/submissions/{submission_id}/submit",
        SUBMISSION_AUTHOR,
        with_(assignment_id=assignment, submission_id=submission("draft")),
    ),
    Case(
        "POST",
        "/api/v1/submissions/{submission_id}/files?filename=a.pdf",
        expect(201, 404, 403, 403, 403, 404),
        with_(assignment_id=assignment, submission_id=submission("draft")),
        raw=PDF,
    ),
    Case(
        "GET",
        "/api/v1/submissions/{submission_id}/files/{file_id}",
        SUBMISSION_READ,
        with_(assignment_id=assignment, submission_id=submission("draft"), file_id=submission_file),
    ),
    Case(
        "DELETE",
        "/api/v1/submissions/{submission_id}/files/{file_id}",
        expect(204, 404, 403, 403, 403, 404),
        with_(assignment_id=assignment, submission_id=submission("draft"), file_id=submission_file),
    ),
    # grading and the gradebook
    Case(
        "PUT",
        "/api/v1/submissions/{submission_id}/grade",
        SUBMISSION_STAFF,
        with_(assignment_id=assignment, submission_id=submission("submitted")),
        body=lambda fx, p: {"score": 7},
    ),
    Case(
        "POST",
        "/api/v1/submissions/{submission_id}/return",
        SUBMISSION_STAFF,
        with_(assignment_id=assignment, submission_id=submission("graded")),
    ),
    Case(
        "POST",
        "/api/v1/assignments/{assignment_id}/grades",
        STAFF_WRITE,
        with_(assignment_id=assignment, submission_id=submission("submitted")),
        body=lambda fx, p: {"grades": [{"submission_id": str(p["submission_id"]), "score": 3}]},
    ),
    Case("GET", "/api/v1/courses/{course_id}/gradebook", STAFF_READ),
    Case("GET", "/api/v1/courses/{course_id}/gradebook.csv", STAFF_READ),
    Case("GET", "/api/v1/courses/{course_id}/grades/me", expect(200, 404, 403, 403, 403, 403)),
    # lessons
    Case(
        "POST",
        "/api/v1/courses/{course_id}/lessons",
        STAFF_CREATE,
        body=lambda fx, p: {"title": "L"},
    ),
    Case("GET", "/api/v1/courses/{course_id}/lessons", READ),
    Case("GET", "/api/v1/lessons/{lesson_id}", READ, with_(lesson_id=lesson)),
    Case(
        "PATCH",
        "/api/v1/lessons/{lesson_id}",
        STAFF_WRITE,
        with_(lesson_id=lesson),
        body=lambda fx, p: {"title": "M"},
    ),
    Case("DELETE", "/api/v1/lessons/{lesson_id}", STAFF_DELETE, with_(lesson_id=lesson)),
    Case(
        "POST",
        "/api/v1/lessons/{lesson_id}/attachments?filename=s.pdf",
        STAFF_CREATE,
        with_(lesson_id=lesson),
        raw=PDF,
    ),
    Case(
        "GET",
        "/api/v1/lessons/{lesson_id}/attachments/{file_id}",
        READ,
        with_(lesson_id=lesson, file_id=lesson_file),
    ),
    Case(
        "DELETE",
        "/api/v1/lessons/{lesson_id}/attachments/{file_id}",
        STAFF_DELETE,
        with_(lesson_id=lesson, file_id=lesson_file),
    ),
    # chat
    Case("GET", "/api/v1/courses/{course_id}/chat", READ),
    Case(
        "POST",
        "/api/v1/courses/{course_id}/chat",
        expect(201, 404, 201, 201, 201, 403),
        body=lambda fx, p: {"body": "hello"},
    ),
    Case("GET", "/api/v1/sessions/{session_id}/chat", READ, with_(session_id=live)),
    Case(
        "POST",
        "/api/v1/sessions/{session_id}/chat",
        expect(201, 404, 201, 201, 201, 403),
        with_(session_id=live),
        body=lambda fx, p: {"body": "hello"},
    ),
    Case(
        "PATCH",
        "/api/v1/chat/{message_id}",
        MESSAGE_AUTHOR,
        with_(message_id=message),
        body=lambda fx, p: {"body": "edited"},
    ),
    Case(
        "DELETE",
        "/api/v1/chat/{message_id}",
        expect(204, 404, 204, 204, 204, 403),
        with_(message_id=message),
    ),
    # recordings
    Case("GET", "/api/v1/courses/{course_id}/recordings", READ),
    Case("GET", "/api/v1/sessions/{session_id}/recordings", READ, with_(session_id=live)),
    Case("GET", "/api/v1/recordings/{recording_id}", READ, with_(recording_id=recording)),
]


def _template(case: Case) -> tuple[str, str]:
    return case.method, case.path.split("?", 1)[0]


def test_the_matrix_covers_every_domain_route() -> None:
    routes = {(r.method, r.path) for table in ROUTE_TABLES for r in table}
    covered = {_template(c) for c in CASES}
    assert routes - covered == set(), "routes missing from the RBAC matrix"
    assert covered - routes == set(), "matrix rows for routes that do not exist"


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=[f"{c.method} {c.path}{' (' + c.course_status + ')' if c.note else ''}" for c in CASES],
)
async def test_rbac_matrix(world: World, db: asyncpg.Connection, case: Case) -> None:
    fx = Fx(world, db)
    actors: dict[str, Actor | None] = {
        "anonymous": None,
        "student": world.student,
        "other": world.other,
        "ta": world.ta,
        "teacher": world.teacher,
        "admin": world.admin,
        "observer": world.observer,
    }
    got: dict[str, int] = {}
    for role in ROLES:
        cid = await fx.course(case.course_status)
        params = {"course_id": cid, **await case.setup(fx, cid)}
        path = case.path.format(**params)
        actor = actors[role]
        headers = dict(actor.headers) if actor else {}
        kwargs: dict[str, Any] = {"headers": headers}
        if case.raw is not None:
            kwargs["data"] = case.raw
            headers["Content-Type"] = "application/octet-stream"
        elif case.body is not None:
            kwargs["json"] = case.body(fx, params)
        resp = await world.client.request(case.method, path, **kwargs)
        got[role] = resp.status
        if resp.status >= 400:
            body = await resp.json()
            assert set(body) == {"error"} and body["error"]["code"], (role, body)
        elif resp.content_type == "application/json":
            await check_response(world.client, case.method, path, resp.status, await resp.json())
    assert got == case.expected
