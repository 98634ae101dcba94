"""Every auth path, against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import jwt
import pytest
from helpers import JWT_TEST_SECRET, Accounts, assert_error, bearer

from vtp.config import Config


async def test_register_login_me_refresh_logout(client: Any, accounts: Accounts) -> None:
    account = await accounts.register(email="Ada@Example.org")
    user = account["user"]
    assert user["role"] == "student"
    assert "password_hash" not in user and "password" not in str(user)

    login = await accounts.login("ada@example.org", account["password"])
    me = await client.get("/api/v1/users/me", headers=bearer(login["access_token"]))
    assert me.status == 200
    assert (await me.json())["id"] == user["id"]

    resp = await client.post("/api/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert resp.status == 200
    fresh = await resp.json()
    assert fresh["access_token"] != login["access_token"]
    assert fresh["refresh_token"] != login["refresh_token"]

    resp = await client.post("/api/v1/auth/logout", headers=bearer(fresh["access_token"]))
    assert resp.status == 204
    me = await client.get("/api/v1/users/me", headers=bearer(fresh["access_token"]))
    assert me.status == 401
    assert_error(await me.json(), "token_revoked")
    # Logout also revoked this login's refresh token.
    resp = await client.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert resp.status == 401
    # Another login of the same user is untouched.
    other = await accounts.login("ada@example.org", account["password"])
    me = await client.get("/api/v1/users/me", headers=bearer(other["access_token"]))
    assert me.status == 200


async def test_duplicate_email_in_another_case_is_409(client: Any, accounts: Accounts) -> None:
    await accounts.register(email="bob@example.org")
    resp = await client.post(
        "/api/v1/auth/register",
        json={
            "email": "BOB@example.ORG",
            "password": "another fine password",
            "display_name": "Bob 2",
        },
    )
    assert resp.status == 409
    assert_error(await resp.json(), "email_taken")


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("short", "at least"),
        ("carol@example.org", "e-mail"),
        ("aaaaaaaaaaaaaaaa", "too easy"),
        ("é" * 40, "at most 72 bytes"),
    ],
)
async def test_weak_passwords_are_refused_with_a_reason(
    client: Any, password: str, fragment: str
) -> None:
    resp = await client.post(
        "/api/v1/auth/register",
        json={"email": "carol@example.org", "password": password, "display_name": "Carol"},
    )
    assert resp.status == 422
    error = assert_error(await resp.json(), "weak_password")
    assert fragment in str(error["message"])
    assert error["details"] == [{"field": "password", "message": error["message"]}]


async def test_invalid_email_is_a_validation_error(client: Any) -> None:
    resp = await client.post(
        "/api/v1/auth/register",
        json={"email": "not-an-email", "password": "a good long password", "display_name": "X"},
    )
    assert resp.status == 400
    error = assert_error(await resp.json(), "validation_error")
    assert [d["field"] for d in error["details"]] == ["email"]  # type: ignore[union-attr]


async def test_wrong_password_and_unknown_account_look_the_same(
    client: Any, accounts: Accounts
) -> None:
    account = await accounts.register()
    wrong = await client.post(
        "/api/v1/auth/login",
        json={"email": account["user"]["email"], "password": "not the password"},
    )
    unknown = await client.post(
        "/api/v1/auth/login",
        json={"email": "nobody@example.org", "password": "not the password"},
    )
    assert wrong.status == unknown.status == 401
    assert (await wrong.json()) == (await unknown.json())
    assert_error(await unknown.json(), "invalid_credentials")


async def _post_from(
    client: Any, address: str, path: str, body: dict[str, str]
) -> aiohttp.ClientResponse:
    """A request from another loopback address (the server limits per client address)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        resp = await session.post(client.make_url(path), json=body)
        await resp.read()
        return resp


async def test_guessing_from_many_addresses_does_not_lock_the_owner_out(
    client: Any, accounts: Accounts, config: Config
) -> None:
    account = await accounts.register()
    email = account["user"]["email"]
    wrong = {"email": email, "password": "wrong password!"}
    # 6 wrong passwords from 6 addresses: each address is slowed, the account is not
    for i in range(6):
        resp = await _post_from(client, f"127.0.0.{11 + i}", "/api/v1/auth/login", wrong)
        assert resp.status == 401
    right = {"email": email.upper(), "password": account["password"]}
    resp = await _post_from(client, "127.0.0.30", "/api/v1/auth/login", right)
    assert resp.status == 200

    # One address guessing: after login_max_attempts failures it must wait, the wait
    # doubles with each further failure, and even the right password waits there ...
    for _ in range(config.login_max_attempts):
        resp = await _post_from(client, "127.0.0.40", "/api/v1/auth/login", wrong)
        assert resp.status == 401
    resp = await _post_from(client, "127.0.0.40", "/api/v1/auth/login", right)
    assert resp.status == 429
    first_wait = int(resp.headers["Retry-After"])
    assert 0 < first_wait <= config.login_delay_base_s + 1
    assert_error(await resp.json(), "rate_limited")
    deadline = time.monotonic() + first_wait + 5
    while (
        resp := await _post_from(client, "127.0.0.40", "/api/v1/auth/login", wrong)
    ).status != 401:
        assert resp.status == 429 and time.monotonic() < deadline
        await asyncio.sleep(0.1)
    resp = await _post_from(client, "127.0.0.40", "/api/v1/auth/login", right)
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) > first_wait  # doubled
    # ... while the owner elsewhere is not slowed at all
    resp = await _post_from(client, "127.0.0.30", "/api/v1/auth/login", right)
    assert resp.status == 200


async def test_registrations_per_address_are_limited(aiohttp_client: Any, config: Config) -> None:
    from vtp.app import create_app

    limited = config.model_copy(update={"register_max_per_address": 3})
    client = await aiohttp_client(create_app(limited))
    statuses = []
    for i in range(5):
        resp = await client.post(
            "/api/v1/auth/register",
            json={
                "email": f"new{i}@example.org",
                "password": "a good long password",
                "display_name": "New",
            },
        )
        statuses.append(resp.status)
    assert statuses == [201, 201, 201, 429, 429]
    assert int(resp.headers["Retry-After"]) > 0
    assert_error(await resp.json(), "rate_limited")
    # another address is not affected
    resp = await _post_from(
        client,
        "127.0.0.50",
        "/api/v1/auth/register",
        {
            "email": "elsewhere@example.org",
            "password": "a good long password",
            "display_name": "Elsewhere",
        },
    )
    assert resp.status == 201


async def test_login_rate_limit_per_address(aiohttp_client: Any, config: Config) -> None:
    from vtp.app import create_app

    limited = config.model_copy(update={"login_ip_max_attempts": 3})
    client = await aiohttp_client(create_app(limited))
    statuses = []
    for i in range(5):
        resp = await client.post(
            "/api/v1/auth/login",
            json={"email": f"someone{i}@example.org", "password": "whatever password"},
        )
        statuses.append(resp.status)
    assert statuses == [401, 401, 401, 429, 429]


async def test_expired_access_token_is_401(client: Any, accounts: Accounts) -> None:
    account = await accounts.register()
    now = int(time.time())
    expired = jwt.encode(
        {
            "iss": "vtp",
            "sub": account["user"]["id"],
            "role": "student",
            "typ": "access",
            "jti": "j1",
            "fam": "f1",
            "iat": now - 3600,
            "exp": now - 60,
        },
        JWT_TEST_SECRET,
        algorithm="HS256",
    )
    resp = await client.get("/api/v1/users/me", headers=bearer(expired))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert_error(await resp.json(), "token_expired")


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        jwt.encode(
            {"sub": "x"}, "some-other-secret-of-a-proper-length-0123456789", algorithm="HS256"
        ),
    ],
)
async def test_invalid_tokens_are_401(client: Any, token: str) -> None:
    resp = await client.get("/api/v1/users/me", headers=bearer(token))
    assert resp.status == 401
    assert_error(await resp.json(), "token_invalid")


async def test_missing_token_is_401(client: Any) -> None:
    resp = await client.get("/api/v1/users/me")
    assert resp.status == 401
    assert_error(await resp.json(), "not_authenticated")


async def test_refresh_token_is_not_an_access_token(client: Any, accounts: Accounts) -> None:
    account = await accounts.register()
    resp = await client.get("/api/v1/users/me", headers=bearer(account["refresh_token"]))
    assert resp.status == 401
    resp = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account["access_token"]}
    )
    assert resp.status == 401


async def test_refresh_reuse_revokes_the_whole_family(client: Any, accounts: Accounts) -> None:
    account = await accounts.register()
    first = account["refresh_token"]
    resp = await client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert resp.status == 200
    second = await resp.json()
    # The stolen first token is presented again.
    resp = await client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert resp.status == 401
    assert_error(await resp.json(), "refresh_reused")
    # Every token of that login is now dead, including the legitimate newer ones.
    resp = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert resp.status == 401
    resp = await client.get("/api/v1/users/me", headers=bearer(second["access_token"]))
    assert resp.status == 401
    resp = await client.get("/api/v1/users/me", headers=bearer(account["access_token"]))
    assert resp.status == 401


async def test_role_denied_is_403(client: Any, accounts: Accounts) -> None:
    student = await accounts.register()
    teacher = await accounts.with_role("teacher")
    for who in (student, teacher):
        resp = await client.patch(
            f"/api/v1/users/{student['user']['id']}/role",
            json={"role": "admin"},
            headers=bearer(who["access_token"]),
        )
        assert resp.status == 403
        assert_error(await resp.json(), "forbidden")


async def test_admin_changes_a_role_and_old_tokens_stop(client: Any, accounts: Accounts) -> None:
    admin = await accounts.with_role("admin")
    student = await accounts.register()
    user_id = student["user"]["id"]
    resp = await client.patch(
        f"/api/v1/users/{user_id}/role",
        json={"role": "teacher"},
        headers=bearer(admin["access_token"]),
    )
    assert resp.status == 200
    assert (await resp.json())["role"] == "teacher"
    # The old token still says "student": it must not keep working.
    resp = await client.get("/api/v1/users/me", headers=bearer(student["access_token"]))
    assert resp.status == 401
    again = await accounts.login(student["user"]["email"], student["password"])
    claims = jwt.decode(again["access_token"], options={"verify_signature": False})
    assert claims["role"] == "teacher"
    resp = await client.get("/api/v1/users/me", headers=bearer(again["access_token"]))
    assert (await resp.json())["role"] == "teacher"


async def test_role_change_input_errors(client: Any, accounts: Accounts) -> None:
    admin = await accounts.with_role("admin")
    headers = bearer(admin["access_token"])
    resp = await client.patch(
        f"/api/v1/users/{uuid.uuid4()}/role", json={"role": "teacher"}, headers=headers
    )
    assert resp.status == 404
    resp = await client.patch(
        "/api/v1/users/not-a-uuid/role", json={"role": "teacher"}, headers=headers
    )
    assert resp.status == 400
    resp = await client.patch(
        f"/api/v1/users/{admin['user']['id']}/role", json={"role": "wizard"}, headers=headers
    )
    assert resp.status == 400
    assert_error(await resp.json(), "validation_error")
    resp = await client.patch(
        f"/api/v1/users/{admin['user']['id']}/role", json={"role": "student"}, headers=headers
    )
    assert resp.status == 409


SESSION = {"X-VTP-Session": "cookie"}


def _refresh_cookie(resp: Any) -> Any:
    morsel = resp.cookies.get("vtp_refresh")
    assert morsel is not None, resp.headers.getall("Set-Cookie", [])
    return morsel


async def test_browser_session_keeps_the_refresh_token_in_an_httponly_cookie(
    client: Any, accounts: Accounts
) -> None:
    account = await accounts.register()
    resp = await client.post(
        "/api/v1/auth/login",
        json={"email": account["user"]["email"], "password": account["password"]},
        headers=SESSION,
    )
    assert resp.status == 200
    body = await resp.json()
    assert "refresh_token" not in body and body["access_token"]
    cookie = _refresh_cookie(resp)
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert cookie["path"] == "/api/v1/auth/refresh" and not cookie["secure"]
    assert int(cookie["max-age"]) == body["refresh_expires_in"]

    # Refresh from the cookie needs the header: a cross-site request cannot send it.
    jar_cookie = {"vtp_refresh": cookie.value}
    resp = await client.post("/api/v1/auth/refresh", cookies=jar_cookie)
    assert resp.status == 403
    assert_error(await resp.json(), "csrf_check_failed")
    resp = await client.post("/api/v1/auth/refresh", headers=SESSION, cookies=jar_cookie)
    assert resp.status == 200, await resp.text()
    fresh = await resp.json()
    assert "refresh_token" not in fresh
    rotated = _refresh_cookie(resp)
    assert rotated.value != cookie.value
    # The old cookie is spent: replaying it signs the whole login out.
    resp = await client.post("/api/v1/auth/refresh", headers=SESSION, cookies=jar_cookie)
    assert resp.status == 401
    assert_error(await resp.json(), "refresh_reused")
    me = await client.get("/api/v1/users/me", headers=bearer(fresh["access_token"]))
    assert me.status == 401

    # No token at all.
    client.session.cookie_jar.clear()
    resp = await client.post("/api/v1/auth/refresh", headers=SESSION)
    assert resp.status == 401
    assert_error(await resp.json(), "not_authenticated")


async def test_logout_clears_the_cookie_and_register_sets_it(client: Any) -> None:
    resp = await client.post(
        "/api/v1/auth/register",
        json={
            "email": "cookie@example.org",
            "password": "a good long password",
            "display_name": "C",
        },
        headers=SESSION,
    )
    assert resp.status == 201
    body = await resp.json()
    assert "refresh_token" not in body
    _refresh_cookie(resp)
    resp = await client.post("/api/v1/auth/logout", headers=bearer(body["access_token"]))
    assert resp.status == 204
    cleared = _refresh_cookie(resp)
    assert cleared.value == "" and cleared["path"] == "/api/v1/auth/refresh"
    assert cleared["max-age"] == "0"


async def test_cookie_is_secure_behind_an_https_public_url(
    aiohttp_client: Any, config: Config
) -> None:
    from vtp.app import create_app

    https = config.model_copy(update={"public_url": "https://vtp.example.org"})
    client = await aiohttp_client(create_app(https))
    accounts = Accounts(client, str(config.database_url))
    account = await accounts.register()
    resp = await client.post(
        "/api/v1/auth/login",
        json={"email": account["user"]["email"], "password": account["password"]},
        headers=SESSION,
    )
    assert resp.status == 200
    assert _refresh_cookie(resp)["secure"]
