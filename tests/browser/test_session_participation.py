"""The session page shows the teacher each participant's participation (talk time,
turns, hands raised, chat messages) beside the attendance, in headless Chromium against
the real server; axe-core finds no serious or critical violation."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from classroom_kit import (
    ARTIFACTS,
    Server,
    browser_fixture,  # noqa: F401  (module fixture)
    server_fixture,  # noqa: F401  (module fixture)
    signed_in_page,
)

from tests.support.chromium import needs_chromium
from vtp.db import participation
from vtp.web.participation import PARTICIPATION

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
    pytest.mark.asyncio(loop_scope="module"),
]


async def test_the_teacher_sees_participation_on_the_session_page(
    server: Server, browser: Any
) -> None:
    from axe_playwright_python.async_playwright import Axe

    teacher = await server.user("Ms Okafor", "teacher")
    student = await server.user("Tomas Berg")
    session = await server.live_session(teacher, [student], title="Acids")
    sid = session["id"]
    await server.call(
        "POST", f"/api/v1/sessions/{sid}/chat", student, json={"body": "Is pH 7 neutral?"}
    )
    # Talk time as the SFU would have counted it (the measurement has its own tests).
    conn = await asyncpg.connect(server.database_url)
    try:
        await participation.add(
            conn,
            [participation.Increment(uuid.UUID(sid), uuid.UUID(student.id), 95_000, 4, 2)],
        )
    finally:
        await conn.close()
    await server.call("POST", f"/api/v1/sessions/{sid}/end", teacher)
    await server.app[PARTICIPATION].wait()

    page = await signed_in_page(browser, server, teacher)
    await page.goto(f"{server.base}/sessions/{sid}")
    table = page.locator("[data-attendance] table")
    row = table.get_by_role("row", name="Tomas Berg")
    await row.wait_for()
    headers = await table.locator("thead th").all_inner_texts()
    assert headers[-4:] == ["Talk time", "Turns", "Hands", "Chat"]
    cells = await row.locator("td").all_inner_texts()
    assert cells[-4:] == ["2 min", "4", "2", "1"]
    results = await Axe().run(page)
    bad = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, results.generate_report()
    await page.screenshot(path=str(ARTIFACTS / "session-participation.png"), full_page=True)
    await page.context.close()
