"""Helpers shared by the tests (a module of its own: conftest.py files cannot be
imported by name reliably once several folders have one)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

JWT_TEST_SECRET = "test-secret-" + "x" * 40


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(body: object, code: str) -> dict[str, object]:
    """Check the JSON error envelope and return its inner object."""
    assert isinstance(body, dict), body
    error = body.get("error")
    assert isinstance(error, dict), body
    assert error["code"] == code, body
    assert isinstance(error["message"], str) and error["message"], body
    assert "details" in error, body
    return error


def assert_app_refuses_route(
    config: Any,
    monkeypatch: Any,
    path: str,
    match: str,
    decorate: Callable[[Any], Any] = lambda handler: handler,
) -> None:
    """``create_app`` with one more route (GET ``path``, its handler as ``decorate`` makes
    it) refuses to build the app: RuntimeError matching ``match``."""
    from aiohttp import web

    from vtp import routes
    from vtp.app import create_app

    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    original = routes.route_tables
    route = web.get(path, decorate(handler))
    monkeypatch.setattr(routes, "route_tables", lambda: [*original(), [route]])
    with pytest.raises(RuntimeError, match=match):
        create_app(config)


BOOM = {"boom": True}  # a message that makes a failing_on_boom receiver raise


def failing_on_boom(
    receive: Callable[[dict[str, Any]], None],
) -> Callable[[dict[str, Any]], None]:
    """``receive``, except that it raises on BOOM: a failing receiver, which a cluster
    listener (mailbox, topic) must survive."""

    def receiver(data: dict[str, Any]) -> None:
        if data.get("boom"):
            raise RuntimeError("a receiver failing")
        receive(data)

    return receiver


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


async def ok(client: Any, method: str, path: str, who: dict[str, Any], **kw: Any) -> Any:
    """``who`` (an account with its access token) calls the API; the call must succeed."""
    resp = await client.request(method, path, headers=bearer(who["access_token"]), **kw)
    assert resp.status < 300, (path, resp.status, await resp.text())
    return await resp.json() if resp.status != 204 else None


async def new_course(client: Any, teacher: dict[str, Any], title: str = "Chemistry") -> Any:
    """A new course of ``teacher``'s (with a code of its own)."""
    return await ok(
        client,
        "POST",
        "/api/v1/courses",
        teacher,
        json={"code": "C-" + uuid.uuid4().hex[:6], "title": title},
    )


async def enroll(
    client: Any, teacher: dict[str, Any], course: dict[str, Any], user: dict[str, Any], **kw: Any
) -> None:
    """The course's teacher enrolls ``user`` (``kw``: the enrollment's other fields)."""
    await ok(
        client,
        "POST",
        f"/api/v1/courses/{course['id']}/enrollments",
        teacher,
        json={"user_id": user["user"]["id"], **kw},
    )


async def scheduled_session(
    client: Any, host: dict[str, Any], course: dict[str, Any], *, start: bool = True, **kw: Any
) -> dict[str, Any]:
    """A session of the course scheduled by ``host`` for the next ten minutes (``kw``: its
    other fields), started through ``client``'s node (its room is placed there) unless not
    ``start``."""
    now = time.time()
    fields = {"title": "Acids", "scheduled_start": iso(now), "scheduled_end": iso(now + 600)}
    path = f"/api/v1/courses/{course['id']}/sessions"
    session: dict[str, Any] = await ok(client, "POST", path, host, json=fields | kw)
    if start:
        session = await ok(client, "POST", f"/api/v1/sessions/{session['id']}/start", host)
    return session


async def class_session(
    client: Any, teacher: dict[str, Any], students: list[dict[str, Any]], *, start: bool = True
) -> dict[str, Any]:
    """A new course of ``teacher``'s with ``students`` in it, and a session of it scheduled
    now, started through ``client``'s node (its room is placed there) unless not ``start``."""
    course = await new_course(client, teacher)
    for student in students:
        await enroll(client, teacher, course, student)
    return await scheduled_session(client, teacher, course, start=start)


class Accounts:
    """Creates users through the public API (and promotes them directly in SQL)."""

    def __init__(self, client: Any, database_url: str) -> None:
        self.client = client
        self.database_url = database_url
        self._n = 0

    async def register(
        self, *, email: str | None = None, password: str = "a good long password"
    ) -> dict[str, Any]:
        self._n += 1
        email = email or f"user{self._n}-{uuid.uuid4().hex[:6]}@example.org"
        resp = await self.client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": password, "display_name": f"User {self._n}"},
        )
        assert resp.status == 201, await resp.text()
        body: dict[str, Any] = await resp.json()
        body["password"] = password
        return body

    async def login(self, email: str, password: str) -> dict[str, Any]:
        resp = await self.client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}
        )
        assert resp.status == 200, await resp.text()
        result: dict[str, Any] = await resp.json()
        return result

    async def with_role(self, role: str) -> dict[str, Any]:
        """A fresh user with `role`, signed in after the role was set."""
        account = await self.register()
        conn = await asyncpg.connect(self.database_url)
        try:
            await conn.execute(
                "UPDATE users SET role = $2 WHERE id = $1", uuid.UUID(account["user"]["id"]), role
            )
        finally:
            await conn.close()
        tokens = await self.login(account["user"]["email"], account["password"])
        return {**account, **tokens}
