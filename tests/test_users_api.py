"""The users list for admins (search, filters, keyset pages) and the caller's display
name, against the real server."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import Accounts, assert_error, bearer

from vtp.api.users import UserOut
from vtp.api.validation import page_of

pytestmark = pytest.mark.asyncio


async def _list(client: Any, token: str, query: str) -> tuple[int, Any]:
    resp = await client.get(f"/api/v1/users?{query}", headers=bearer(token))
    return int(resp.status), await resp.json()


async def test_admins_list_and_search_accounts_page_by_page(
    client: Any, accounts: Accounts
) -> None:
    admin = await accounts.with_role("admin")
    teacher = await accounts.with_role("teacher")
    named = [await accounts.register(email=f"Pat.{i}@Example.ORG") for i in range(3)]
    odd = await accounts.register(email="50%_off@example.org")
    token = admin["access_token"]

    # Every account, oldest first, in pages of two that neither repeat nor skip.
    seen: list[str] = []
    cursor = None
    while True:
        status, body = await _list(
            client, token, "limit=2" + (f"&cursor={cursor}" if cursor else "")
        )
        assert status == 200, body
        page_of(UserOut).model_validate(body)
        assert len(body["items"]) <= 2
        seen += [u["id"] for u in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    everyone = [admin, teacher, *named, odd]
    assert seen == [a["user"]["id"] for a in everyone]

    # Search: part of the address or the name, any case; % and _ are characters.
    status, body = await _list(client, token, "q=pat.")
    assert [u["id"] for u in body["items"]] == [a["user"]["id"] for a in named]
    status, body = await _list(client, token, "q=%25_")
    assert [u["email"] for u in body["items"]] == ["50%_off@example.org"]
    name = named[1]["user"]["display_name"]
    status, body = await _list(client, token, f"q={name.upper().replace(' ', '+')}")
    assert named[1]["user"]["id"] in [u["id"] for u in body["items"]]
    status, body = await _list(client, token, "role=teacher")
    assert [u["id"] for u in body["items"]] == [teacher["user"]["id"]]

    # Filters: the disabled ones.
    resp = await client.patch(
        f"/api/v1/users/{odd['user']['id']}/active",
        json={"is_active": False},
        headers=bearer(token),
    )
    assert resp.status == 200
    status, body = await _list(client, token, "active=false")
    assert [u["id"] for u in body["items"]] == [odd["user"]["id"]]
    status, body = await _list(client, token, "active=true&q=example.org")
    assert odd["user"]["id"] not in [u["id"] for u in body["items"]]

    # Bad queries are 400s naming the parameter.
    for query, field in (
        ("limit=0", "limit"),
        ("role=wizard", "role"),
        ("cursor=garbage", "cursor"),
        ("active=perhaps", "active"),
        ("q=", "q"),
        ("q=a%00b", "q"),
        ("q=" + "x" * 201, "q"),
        ("sort=name", "sort"),
    ):
        status, body = await _list(client, token, query)
        assert status == 400, (query, body)
        error = assert_error(body, "validation_error")
        assert [d["field"] for d in error["details"]] == [field], (query, error)  # type: ignore[union-attr]

    # Only admins.
    status, body = await _list(client, teacher["access_token"], "")
    assert status == 403
    assert_error(body, "forbidden")
    resp = await client.get("/api/v1/users")
    assert resp.status == 401


async def test_a_user_changes_their_display_name(client: Any, accounts: Accounts) -> None:
    account = await accounts.register()
    auth = bearer(account["access_token"])
    resp = await client.patch(
        "/api/v1/users/me", json={"display_name": "  Ada Lovelace "}, headers=auth
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["display_name"] == "Ada Lovelace"
    me = await (await client.get("/api/v1/users/me", headers=auth)).json()
    assert me["display_name"] == "Ada Lovelace"
    for body, field in (
        ({"display_name": "   "}, "display_name"),
        ({"display_name": "x" * 121}, "display_name"),
        ({"display_name": "Ada", "role": "admin"}, "role"),
        ({"display_name": "A\u0000da"}, "display_name"),
    ):
        resp = await client.patch("/api/v1/users/me", json=body, headers=auth)
        assert resp.status == 400, body
        error = assert_error(await resp.json(), "validation_error")
        assert error["details"][0]["field"] == field  # type: ignore[index]
    me = await (await client.get("/api/v1/users/me", headers=auth)).json()
    assert me["display_name"] == "Ada Lovelace" and me["role"] == "student"
    resp = await client.patch("/api/v1/users/me", json={"display_name": "Someone"})
    assert resp.status == 401
