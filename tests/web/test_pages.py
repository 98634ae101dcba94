"""The page routes and /static/: HTML shells that load the JavaScript modules."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.asyncio


async def test_pages_render_without_a_token(client: Any) -> None:
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/dashboard"
    for path, script in (
        ("/signin", "/static/app/signin.js"),
        ("/dashboard", "/static/app/dashboard.js"),
        (f"/classroom/{uuid.uuid4()}", "/static/app/classroom.js"),
    ):
        resp = await client.get(path)
        assert resp.status == 200, path
        assert resp.content_type == "text/html"
        html = await resp.text()
        assert f'<script type="module" src="{script}' in html, path
        assert '<html lang="en">' in html and 'name="viewport"' in html
        assert 'href="/static/app/vtp.css' in html


async def test_classroom_id_is_checked_and_escaped(client: Any) -> None:
    resp = await client.get("/classroom/not-a-uuid")
    assert resp.status == 404
    session_id = uuid.uuid4()
    html = await (await client.get(f"/classroom/{session_id}")).text()
    assert f'data-session-id="{session_id}"' in html


async def test_static_assets_are_served(client: Any) -> None:
    for name, kind in (
        ("api.js", "javascript"),
        ("sfu.js", "javascript"),
        ("live.js", "javascript"),
        ("classroom.js", "javascript"),
        ("vtp.css", "css"),
    ):
        resp = await client.get(f"/static/app/{name}")
        assert resp.status == 200, name
        assert kind in resp.content_type, (name, resp.content_type)
    assert (await client.get("/static/app/nope.js")).status == 404
    assert (await client.get("/static/../pyproject.toml")).status in (403, 404)
