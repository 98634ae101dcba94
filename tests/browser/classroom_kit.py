"""Shared pieces of the browser-client tests: one VTP server and one headless Chromium per
test module (module-scoped: a server and a browser cost seconds each), a course with a
live session, and helpers that poll what the page shows and decodes.

(Imported by the test modules; a conftest.py here would shadow tests/conftest.py.)
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web
from redis import Redis as SyncRedis

from tests.support.chromium import chromium
from tests.support.waiting import eventually
from vtp.config import Config, load_config

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PG_ADMIN_URL = os.environ.get(
    "VTP_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_BASE_URL = os.environ.get("VTP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_DB = 11  # not the other suites' database: they flush theirs before each test
PASSWORD = "a good long password"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def _with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


@dataclass
class User:
    id: str
    email: str
    name: str
    tokens: dict[str, Any]


@dataclass
class Server:
    base: str
    database_url: str
    http: aiohttp.ClientSession
    app: web.Application
    users: dict[str, User] = field(default_factory=dict)
    runner: web.AppRunner | None = None

    async def stop(self) -> None:
        """Stop serving now (a node that goes away mid-class); idempotent."""
        if self.runner is not None and self.runner.server is not None:
            await self.runner.cleanup()

    async def call(self, method: str, path: str, user: User | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {user.tokens['access_token']}"} if user else {}
        async with self.http.request(method, self.base + path, headers=headers, **kw) as resp:
            body = await resp.json() if resp.content_type == "application/json" else None
            assert resp.status < 300, (method, path, resp.status, body)
            return body

    async def user(self, name: str, role: str = "student") -> User:
        email = f"{name.split()[0].lower()}-{uuid.uuid4().hex[:6]}@school.example"
        reply = await self.call(
            "POST",
            "/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "display_name": name},
        )
        if role != "student":
            conn = await asyncpg.connect(self.database_url)
            try:
                await conn.execute(
                    "UPDATE users SET role = $2 WHERE id = $1",
                    uuid.UUID(reply["user"]["id"]),
                    role,
                )
            finally:
                await conn.close()
        tokens = await self.call(
            "POST", "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
        )
        user = User(reply["user"]["id"], email, name, tokens)
        self.users[name] = user
        return user

    async def live_session(
        self,
        teacher: User,
        students: list[User],
        title: str = "Photosynthesis",
        *,
        students_may_publish: bool = True,
    ) -> dict[str, Any]:
        course = await self.call(
            "POST",
            "/api/v1/courses",
            teacher,
            json={
                "code": "BIO-" + uuid.uuid4().hex[:5],
                "title": "Biology 101",
                "enrollment_code": "bio-" + uuid.uuid4().hex[:8],
            },
        )
        for student in students:
            await self.call(
                "POST",
                f"/api/v1/courses/{course['id']}/enrollments",
                teacher,
                json={"user_id": student.id, "role": "student"},
            )
        now = time.time()
        session = await self.call(
            "POST",
            f"/api/v1/courses/{course['id']}/sessions",
            teacher,
            json={
                "title": title,
                "scheduled_start": iso(now),
                "scheduled_end": iso(now + 3600),
                "students_may_publish": students_may_publish,
            },
        )
        started: dict[str, Any] = await self.call(
            "POST", f"/api/v1/sessions/{session['id']}/start", teacher
        )
        return started


def iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat()


@contextlib.asynccontextmanager
async def serve(
    pg_template: str,
    state_dir: Path,
    host: str = "127.0.0.1",
    *,
    port: int = 0,
    share_with: Server | None = None,
    **settings: Any,
) -> AsyncIterator[Server]:
    """VTP on a free port of ``host`` (or ``port``; ICE there too unless ``settings`` say
    otherwise), with a database of its own, or the database and Redis of ``share_with``
    (another node of the same cluster); ``settings`` override the test configuration."""
    from vtp.app import create_app

    ARTIFACTS.mkdir(exist_ok=True)  # screenshots (gitignored)
    name = f"vtp_web_{uuid.uuid4().hex[:10]}"
    redis_url = _with_path(REDIS_BASE_URL, f"/{REDIS_DB}")
    if share_with is None:
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
        finally:
            await admin.close()
        database_url = _with_path(PG_ADMIN_URL, f"/{name}")
        redis = SyncRedis.from_url(redis_url)
        try:
            redis.flushdb()
        finally:
            redis.close()
    else:
        database_url = share_with.database_url
    config: Config = load_config(
        database_url=database_url,
        redis_url=redis_url,
        state_dir=state_dir,
        jwt_secret="test-secret-" + "y" * 40,
        bcrypt_cost=4,
        log_level="WARNING",
        register_max_per_address=10_000,  # every test account registers from one address
    ).model_copy(update={"ice_addresses": [host], "room_grace_s": 2.0, **settings})
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    port = runner.addresses[0][1]
    literal = f"[{host}]" if ":" in host else host
    try:
        async with aiohttp.ClientSession() as http:
            server = Server(f"http://{literal}:{port}", database_url, http, app, runner=runner)
            yield server
    finally:
        if runner.server is not None:  # (not stopped by the test)
            await runner.cleanup()
        if share_with is None:
            admin = await asyncpg.connect(PG_ADMIN_URL)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module", name="server")
async def server_fixture(
    pg_template: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    """VTP on a loopback port (ICE on 127.0.0.1), with a database of this module's own."""
    async with serve(pg_template, tmp_path_factory.mktemp("state")) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module", name="browser")
async def browser_fixture() -> AsyncIterator[Any]:
    async with chromium() as browser:
        yield browser


async def signed_in_page(browser: Any, server: Server, user: User, **context: Any) -> Any:
    """A page in a context of its own, signed in as the user: the access token in
    localStorage, the refresh token in the HttpOnly cookie, as a sign-in leaves them."""
    context.setdefault("viewport", {"width": 1280, "height": 800})
    ctx = await browser.new_context(**context)
    await ctx.add_cookies([refresh_cookie(server, user.tokens["refresh_token"])])
    page = await ctx.new_page()
    page.on("pageerror", lambda exc: print(f"[{user.name}] page error: {exc}"))
    await page.goto(server.base + "/signin?next=/nowhere")
    await page.evaluate(
        """([t, user]) => localStorage.setItem("vtp.session", JSON.stringify({
            access_token: t.access_token,
            access_expires_at: Date.now() + t.expires_in * 1000,
            refresh_expires_at: Date.now() + t.refresh_expires_in * 1000, user}))""",
        [user.tokens, {"id": user.id, "display_name": user.name}],
    )
    return page


def refresh_cookie(server: Server, token: str) -> dict[str, Any]:
    """The browser session's refresh cookie (vtp.api.session_cookie) for Playwright."""
    return {
        "name": "vtp_refresh",
        "value": token,
        "domain": urlsplit(server.base).hostname,
        "path": "/api/v1/auth/refresh",
        "httpOnly": True,
        "sameSite": "Strict",
    }


async def check_page(page: Any, name: str) -> None:
    """axe-core (no serious or critical violations), nothing wider than the screen, and
    a full-page screenshot into test-artifacts/, at desktop and at phone width."""
    from axe_playwright_python.async_playwright import Axe

    size = page.viewport_size
    for width, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        await page.set_viewport_size(viewport)
        wide = await page.evaluate("document.documentElement.scrollWidth")
        assert wide <= viewport["width"], f"{name} ({width}): {wide} px wide"
        results = await Axe().run(page)
        bad = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
        assert not bad, f"{name} ({width}): " + results.generate_report()
        await page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
    await page.set_viewport_size(size)


async def classroom_stats(page: Any) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate("vtpClassroom.stats()")
    return result


class NotYet(dict[str, Any]):
    """Falsy stats: what was seen, for the failure message."""

    def __bool__(self) -> bool:
        return False


async def decoding(page: Any, streams: int, frames: int = 10) -> dict[str, Any]:
    """Stats once `streams` subscriptions have each decoded at least `frames` frames."""
    stats = await classroom_stats(page)
    sfu = stats["sfu"] or {"subs": []}
    video = [s for s in sfu["subs"] if s["framesDecoded"] >= frames and s["frameWidth"] > 0]
    return stats if len(video) >= streams else NotYet(stats)


async def join_class(page: Any) -> None:
    """Press Join on the classroom's pre-join screen, once it is enabled."""
    button = page.get_by_role("button", name="Join class")
    await button.wait_for()
    await eventually(button.is_enabled, 15, "the Join button enabled")
    await button.click()
