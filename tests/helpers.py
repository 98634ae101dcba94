"""Helpers shared by the tests (a module of its own: conftest.py files cannot be
imported by name reliably once several folders have one)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

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
