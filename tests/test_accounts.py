"""Account security against the real server: change password, admin disable/enable,
one-time reset links issued by an admin or e-mailed through a local SMTP sink."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import asyncpg
import pytest
from helpers import Accounts, assert_error, bearer

from vtp.config import Config

NEW_PASSWORD = "a brand new passphrase"
SESSION = {"X-VTP-Session": "cookie"}


async def status_of(client: Any, token: str) -> int:
    resp = await client.get("/api/v1/users/me", headers=bearer(token))
    return int(resp.status)


async def refresh_status(client: Any, refresh_token: str) -> int:
    resp = await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    return int(resp.status)


async def login_status(client: Any, email: str, password: str) -> int:
    resp = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    return int(resp.status)


async def test_change_password_signs_out_every_other_session(
    client: Any, accounts: Accounts
) -> None:
    account = await accounts.register()
    email = account["user"]["email"]
    here = await accounts.login(email, account["password"])
    elsewhere = await accounts.login(email, account["password"])
    url = "/api/v1/users/me/password"
    auth = bearer(here["access_token"])

    resp = await client.post(
        url, json={"current_password": "not it at all", "new_password": NEW_PASSWORD}, headers=auth
    )
    assert resp.status == 403
    assert_error(await resp.json(), "wrong_password")
    resp = await client.post(
        url, json={"current_password": account["password"], "new_password": "short"}, headers=auth
    )
    assert resp.status == 422
    error = assert_error(await resp.json(), "weak_password")
    assert error["details"][0]["field"] == "new_password"  # type: ignore[index]
    assert await status_of(client, here["access_token"]) == 200  # nothing changed yet

    resp = await client.post(
        url,
        json={"current_password": account["password"], "new_password": NEW_PASSWORD},
        headers=auth,
    )
    assert resp.status == 200, await resp.text()
    fresh = await resp.json()
    assert fresh["user"]["id"] == account["user"]["id"]
    assert await status_of(client, fresh["access_token"]) == 200
    assert await refresh_status(client, fresh["refresh_token"]) == 200
    # Every token issued before the change is dead: this client's and the other one's.
    for old in (here, elsewhere):
        assert await status_of(client, old["access_token"]) == 401
        assert await refresh_status(client, old["refresh_token"]) == 401
    assert await login_status(client, email, account["password"]) == 401
    assert await login_status(client, email, NEW_PASSWORD) == 200

    # A browser session gets its new refresh token as the cookie.
    browser = await accounts.login(email, NEW_PASSWORD)
    resp = await client.post(
        url,
        json={"current_password": NEW_PASSWORD, "new_password": "yet another passphrase"},
        headers={**bearer(browser["access_token"]), **SESSION},
    )
    assert resp.status == 200
    assert "refresh_token" not in await resp.json()
    assert resp.cookies["vtp_refresh"]["httponly"]


async def test_wrong_current_passwords_are_rate_limited(
    client: Any, accounts: Accounts, config: Config
) -> None:
    account = await accounts.register()
    auth = bearer(account["access_token"])
    body = {"current_password": "wrong wrong wrong", "new_password": NEW_PASSWORD}
    for _ in range(config.login_max_attempts):
        resp = await client.post("/api/v1/users/me/password", json=body, headers=auth)
        assert resp.status == 403
    body["current_password"] = account["password"]  # even the right one, now
    resp = await client.post("/api/v1/users/me/password", json=body, headers=auth)
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) > 0


async def test_admin_disables_and_enables_an_account(client: Any, accounts: Accounts) -> None:
    admin = await accounts.with_role("admin")
    student = await accounts.register()
    email = student["user"]["email"]
    url = f"/api/v1/users/{student['user']['id']}/active"

    resp = await client.patch(
        url, json={"is_active": False}, headers=bearer(student["access_token"])
    )
    assert resp.status == 403
    resp = await client.patch(
        f"/api/v1/users/{admin['user']['id']}/active",
        json={"is_active": False},
        headers=bearer(admin["access_token"]),
    )
    assert resp.status == 409
    assert_error(await resp.json(), "self_disable_guard")
    resp = await client.patch(
        f"/api/v1/users/{uuid.uuid4()}/active",
        json={"is_active": False},
        headers=bearer(admin["access_token"]),
    )
    assert resp.status == 404

    resp = await client.patch(url, json={"is_active": False}, headers=bearer(admin["access_token"]))
    assert resp.status == 200
    assert (await resp.json())["is_active"] is False
    assert await status_of(client, student["access_token"]) == 401
    assert await refresh_status(client, student["refresh_token"]) == 401
    assert await login_status(client, email, student["password"]) == 401

    resp = await client.patch(url, json={"is_active": True}, headers=bearer(admin["access_token"]))
    assert resp.status == 200 and (await resp.json())["is_active"] is True
    assert await login_status(client, email, student["password"]) == 200
    assert await status_of(client, student["access_token"]) == 401  # still revoked


async def _issue_link(client: Any, admin: dict[str, Any], user_id: str) -> str:
    resp = await client.post(
        f"/api/v1/users/{user_id}/password-reset", headers=bearer(admin["access_token"])
    )
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert "/reset-password#token=" in body["reset_url"] and body["expires_at"]
    return str(body["reset_url"]).rpartition("#token=")[2]


async def test_admin_reset_link_works_once(
    client: Any, accounts: Accounts, database_url: str
) -> None:
    admin = await accounts.with_role("admin")
    student = await accounts.register()
    email, user_id = student["user"]["email"], student["user"]["id"]
    resp = await client.post(
        f"/api/v1/users/{user_id}/password-reset", headers=bearer(student["access_token"])
    )
    assert resp.status == 403
    token = await _issue_link(client, admin, user_id)
    other_token = await _issue_link(client, admin, user_id)
    conn = await asyncpg.connect(database_url)
    try:  # only a hash is kept
        stored = await conn.fetch("SELECT token_hash FROM password_resets")
        assert hashlib.sha256(token.encode()).digest() in {r["token_hash"] for r in stored}
        assert all(token.encode() not in bytes(r["token_hash"]) for r in stored)
    finally:
        await conn.close()

    url = "/api/v1/auth/password-reset"
    resp = await client.post(url, json={"token": token, "new_password": "short"})
    assert resp.status == 422  # the policy applies, and the link is not spent by it
    resp = await client.post(url, json={"token": "x" * 43, "new_password": NEW_PASSWORD})
    assert resp.status == 400
    assert_error(await resp.json(), "invalid_reset_token")
    resp = await client.post(url, json={"token": token, "new_password": NEW_PASSWORD})
    assert resp.status == 204, await resp.text()
    assert await status_of(client, student["access_token"]) == 401  # signed out everywhere
    assert await login_status(client, email, NEW_PASSWORD) == 200
    # Once: the same link, and the other open link, no longer work.
    for used in (token, other_token):
        resp = await client.post(url, json={"token": used, "new_password": "another passphrase"})
        assert resp.status == 400
        assert_error(await resp.json(), "invalid_reset_token")


async def test_expired_reset_link_is_refused(
    client: Any, accounts: Accounts, database_url: str
) -> None:
    admin = await accounts.with_role("admin")
    student = await accounts.register()
    token = await _issue_link(client, admin, student["user"]["id"])
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE password_resets SET expires_at = now() - interval '1 second'")
    finally:
        await conn.close()
    resp = await client.post(
        "/api/v1/auth/password-reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert resp.status == 400
    assert_error(await resp.json(), "invalid_reset_token")


async def test_reset_by_email_needs_smtp(client: Any) -> None:
    resp = await client.post("/api/v1/auth/password-reset/request", json={"email": "a@example.org"})
    assert resp.status == 503
    assert_error(await resp.json(), "email_not_configured")


@pytest.fixture
async def smtp_sink() -> Any:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    received: list[Any] = []

    class Keep(Message):  # type: ignore[misc]
        def handle_message(self, message: Any) -> None:
            received.append(message)

    import socket

    with socket.socket() as probe:  # a free port (the controller cannot take port 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield controller, received
    finally:
        controller.stop()


async def test_reset_link_by_email(aiohttp_client: Any, config: Config, smtp_sink: Any) -> None:
    from vtp.app import create_app
    from vtp.mail import MAILER

    controller, received = smtp_sink
    mailing = config.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": controller.port,
            "smtp_starttls": False,
            "smtp_from": "classroom@school.example",
            "public_url": "https://vtp.school.example",
        }
    )
    client = await aiohttp_client(create_app(mailing))
    accounts = Accounts(client, str(config.database_url))
    student = await accounts.register()
    email = student["user"]["email"]
    mailer = client.server.app[MAILER]

    for address in (email.upper(), "nobody@example.org"):
        resp = await client.post("/api/v1/auth/password-reset/request", json={"email": address})
        assert resp.status == 202
    await mailer.drain()
    assert len(received) == 1  # only the real account gets mail; the answer was the same
    message = received[0]
    assert message["To"] == email and message["From"] == "classroom@school.example"
    body = message.get_payload(decode=True).decode()
    link = next(
        w for w in body.split() if w.startswith("https://vtp.school.example/reset-password#token=")
    )
    token = link.rpartition("#token=")[2]
    resp = await client.post(
        "/api/v1/auth/password-reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert resp.status == 204
    assert await login_status(client, email, NEW_PASSWORD) == 200

    # At most three e-mails per account per hour, and the answer does not tell.
    for _ in range(4):
        resp = await client.post("/api/v1/auth/password-reset/request", json={"email": email})
        assert resp.status == 202
    await mailer.drain()
    assert len(received) == 3
