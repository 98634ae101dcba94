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


async def test_pages_carry_security_headers_and_no_inline_script(client: Any) -> None:
    import re

    pages = (
        "/signin",
        "/dashboard",
        "/account",
        "/admin/users",
        "/reset-password",
        f"/classroom/{uuid.uuid4()}",
        f"/sessions/{uuid.uuid4()}",
        f"/courses/{uuid.uuid4()}",
    )
    for path in (*pages, "/api/v1/docs"):
        resp = await client.get(path)
        assert resp.status == 200, path
        csp = resp.headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["script-src"] == "'self'", csp
        assert directives["style-src"] == "'self'", csp
        assert directives["frame-ancestors"] == "'none'", csp
        assert directives["object-src"] == "'none'", csp
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        html = await resp.text()
        # Every script is a same-origin file: no inline code, no inline handlers or styles.
        for tag in re.findall(r"<script[^>]*>", html):
            assert re.search(r'src="/static/app/[a-z]+\.js', tag), (path, tag)
        assert not re.search(r"<script[^>]*>[^<]", html), path
        assert not re.search(r"\son[a-z]+=|<style|\sstyle=", html), path
    for path in ("/static/app/api.js", "/api/v1/openapi.json"):
        resp = await client.get(path)
        assert resp.headers["X-Content-Type-Options"] == "nosniff", path


async def test_only_the_client_assets_are_served_from_static(client: Any) -> None:
    assert (await client.get("/static/app/api.js")).status == 200
    assert (await client.get("/static/app/classroom/state.js")).status == 200
    for path in ("/static/sfu-test.html", "/static/tsconfig.json", "/static/app/../tsconfig.json"):
        assert (await client.get(path)).status == 404, path


async def test_playback_media_may_come_from_the_s3_endpoint(config: Any) -> None:
    from vtp.web.headers import content_security_policy

    policy = content_security_policy(config.model_copy(update={"s3_endpoint": "minio:9000"}))
    assert "media-src 'self' blob: http://minio:9000" in policy
    secure = config.model_copy(update={"s3_endpoint": "https://s3.example.org"})
    assert "media-src 'self' blob: https://s3.example.org" in content_security_policy(secure)


async def test_pages_may_connect_to_the_cluster_nodes(config: Any) -> None:
    """The browser client follows a class to its room's node: the CSP names each node
    (fetch and WebSocket: CSP's http: source does not cover ws:) and VTP_CLUSTER_ORIGINS."""
    import pydantic

    from vtp.config import load_config
    from vtp.web.headers import content_security_policy

    assert "connect-src 'self';" in content_security_policy(config)
    clustered = config.model_copy(update={"cluster_origins": ["https://*.vtp.example"]})
    nodes = frozenset({"http://10.0.0.5:8081", "https://node2.example:8443"})
    policy = content_security_policy(clustered, nodes=nodes)
    connect = next(p for p in policy.split("; ") if p.startswith("connect-src"))
    assert connect.split() == [
        "connect-src",
        "'self'",
        "http://10.0.0.5:8081",
        "ws://10.0.0.5:8081",
        "https://*.vtp.example",
        "wss://*.vtp.example",
        "https://node2.example:8443",
        "wss://node2.example:8443",
    ]
    loaded = load_config(cluster_origins="https://a.example, http://[::1]:8080")
    assert loaded.cluster_origins == ["https://a.example", "http://[::1]:8080"]
    for bad in ("a.example", "https://a.example/path", "https://a.example; script-src *"):
        try:
            load_config(cluster_origins=bad)
        except pydantic.ValidationError as exc:
            assert "is not an origin" in str(exc)
        else:
            raise AssertionError(f"{bad!r} accepted")
