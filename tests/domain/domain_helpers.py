"""Shared helpers of the teaching-domain API tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import make_mocked_request
from helpers import bearer

from vtp.api.endpoint import answer_model
from vtp.api.teaching_routes import ROUTE_TABLES

START = datetime(2030, 1, 6, 9, 0, tzinfo=UTC)  # when the tests' sessions are scheduled


@dataclass
class Actor:
    name: str
    user_id: str
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


@dataclass
class World:
    client: Any
    teacher: Actor
    ta: Actor
    student: Actor
    observer: Actor
    other: Actor
    admin: Actor
    outsider: Actor
    course: dict[str, Any]
    other_course: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def course_id(self) -> str:
        return str(self.course["id"])

    async def call(
        self, actor: Actor | None, method: str, path: str, json: Any = None, **kw: Any
    ) -> tuple[int, Any]:
        headers = actor.headers if actor else {}
        if json is not None:
            kw["json"] = json
        resp = await self.client.request(method, path, headers=headers, **kw)
        if resp.content_type == "application/json":
            body = await resp.json()
            await check_response(self.client, method, path, resp.status, body)
            return resp.status, body
        return resp.status, await resp.text()

    async def ok(
        self, actor: Actor | None, method: str, path: str, json: Any = None, status: int = 200
    ) -> Any:
        got, body = await self.call(actor, method, path, json)
        assert got == status, (method, path, got, body)
        return body

    async def schedule(self, title: str = "Lecture") -> dict[str, Any]:
        """A session of the course, scheduled by its teacher for an hour from START."""
        slot = {
            "title": title,
            "scheduled_start": START.isoformat(),
            "scheduled_end": (START + timedelta(hours=1)).isoformat(),
        }
        path = f"/api/v1/courses/{self.course_id}/sessions"
        session: dict[str, Any] = await self.ok(self.teacher, "POST", path, slot, status=201)
        return session

    async def start_session(self, title: str = "Lecture") -> str:
        """A session of the course, scheduled and started by its teacher: its id."""
        sid = str((await self.schedule(title))["id"])
        await self.ok(self.teacher, "POST", f"/api/v1/sessions/{sid}/start")
        return sid


async def check_response(client: Any, method: str, path: str, status: int, body: Any) -> None:
    """A successful JSON answer of a domain route matches its declared @returns model
    (the schema in openapi.json): no undeclared, missing or mistyped fields."""
    if not 200 <= status < 300:
        return
    app = client.server.app
    match = await app.router.resolve(make_mocked_request(method, path, app=app))
    handler = getattr(getattr(match, "route", None), "handler", None)
    if handler is None or not any(handler is r.handler for t in ROUTE_TABLES for r in t):
        return
    shape = answer_model(handler)
    assert shape is not None, f"{method} {path} answers JSON but declares no @returns"
    shape.model_validate(body)


def actor(name: str, account: dict[str, Any]) -> Actor:
    return Actor(name, account["user"]["id"], account["user"]["email"], account["access_token"])


async def make_course(client: Any, teacher: Actor, **fields: Any) -> dict[str, Any]:
    body = {"code": "C-" + uuid.uuid4().hex[:8], "title": "Course", **fields}
    resp = await client.post("/api/v1/courses", json=body, headers=teacher.headers)
    assert resp.status == 201, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


async def enrol(client: Any, teacher: Actor, course_id: str, who: Actor, role: str) -> None:
    resp = await client.post(
        f"/api/v1/courses/{course_id}/enrollments",
        json={"user_id": who.user_id, "role": role},
        headers=teacher.headers,
    )
    assert resp.status == 201, await resp.text()


async def make_world(client: Any, accounts: Any) -> World:
    teacher = actor("teacher", await accounts.with_role("teacher"))
    teacher2 = actor("teacher2", await accounts.with_role("teacher"))
    admin = actor("admin", await accounts.with_role("admin"))
    ta = actor("ta", await accounts.register())
    student = actor("student", await accounts.register())
    observer = actor("observer", await accounts.register())
    other = actor("other", await accounts.register())
    outsider = actor("outsider", await accounts.register())
    course = await make_course(client, teacher, title="Physics 101")
    other_course = await make_course(client, teacher2, title="History 101")
    await enrol(client, teacher, course["id"], ta, "ta")
    await enrol(client, teacher, course["id"], student, "student")
    await enrol(client, teacher, course["id"], observer, "observer")
    await enrol(client, teacher2, other_course["id"], other, "student")
    return World(
        client,
        teacher,
        ta,
        student,
        observer,
        other,
        admin,
        outsider,
        course,
        other_course,
        {"teacher2": teacher2},
    )
