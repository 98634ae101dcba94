"""The live classroom in headless Chromium: a teacher and two students in three browser
contexts, against VTP's own SFU on loopback. The module's tests share one server, one
browser and the three pages, and run in file order (the class goes on between them)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from classroom_kit import (
    ARTIFACTS,
    Server,
    User,
    browser,  # noqa: F401  (module fixture)
    classroom_stats,
    decoding,
    eventually,
    needs_chromium,
    server,  # noqa: F401  (module fixture)
    signed_in_page,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    needs_chromium,
    pytest.mark.asyncio(loop_scope="module"),
]


class Class:
    def __init__(self, server: Server, session: dict[str, Any], cast: dict[str, User]) -> None:
        self.server = server
        self.session = session
        self.cast = cast
        self.pages: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return f"{self.server.base}/classroom/{self.session['id']}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lesson(server: Server, browser: Any) -> Class:  # noqa: F811
    teacher = await server.user("Ms Rivera", role="teacher")
    ada = await server.user("Ada Okafor")
    ben = await server.user("Ben Tanaka")
    session = await server.live_session(teacher, [ada, ben])
    lesson = Class(server, session, {"teacher": teacher, "ada": ada, "ben": ben})
    for key, user in lesson.cast.items():
        page = await signed_in_page(browser, server, user)
        await page.goto(lesson.url)
        lesson.pages[key] = page
    return lesson


async def join(page: Any) -> None:
    join_button = page.get_by_role("button", name="Join class")
    await join_button.wait_for()
    await eventually(join_button.is_enabled, 15, "the Join button enabled")
    await join_button.click()


async def test_three_join_each_decodes_the_other_two_and_chat_reaches_all(lesson: Class) -> None:
    pages = lesson.pages
    # Before joining: the preview plays and the devices are listed.
    teacher = pages["teacher"]
    await eventually(
        lambda: teacher.evaluate(
            "() => { const v = document.querySelector('[data-preview]');"
            " return v.videoWidth > 0 && !v.paused; }"
        ),
        15,
        "the camera preview",
    )
    assert await teacher.locator("#camera-select option").count() >= 1
    assert await teacher.locator("#mic-select option").count() >= 1

    for page in pages.values():
        await join(page)
    for name, page in pages.items():
        stats = await eventually(lambda p=page: decoding(p, 2), 30, f"{name} decoding two streams")
        first = {s["streamId"]: s["framesDecoded"] for s in stats["sfu"]["subs"]}
        await asyncio.sleep(1.5)
        later = await classroom_stats(page)
        for sub in later["sfu"]["subs"]:
            assert sub["framesDecoded"] > first[sub["streamId"]] + 10, (name, first, later)
            assert sub["audioPackets"] > 0, (name, later)
        # Three tiles: me and the other two, their videos playing with a size.
        remote = [v for v in later["videos"] if v["key"].startswith("peer:")]
        assert len(remote) == 2, (name, later["videos"])
        for video in remote:
            assert video["playing"] and video["videoWidth"] > 0, (name, video)
            assert video["width"] > 100 and video["height"] > 50, (name, video)
        assert later["conn"] == "Connected", later
    # The teacher is shown large for the students, with the name on the tile.
    for name in ("ada", "ben"):
        stage = pages[name].locator("[data-stage] .tile.featured")
        await stage.wait_for()
        assert "Ms Rivera" in await stage.locator(".name").inner_text()
        assert await stage.locator(".badge").inner_text() == "Teacher"
    # Who is present (from the live channel), in everyone's People tab.
    await pages["ada"].get_by_role("tab", name="People").click()
    people = pages["ada"].locator("[data-people] .person")
    await eventually(lambda: people.count(), 10, "people listed")
    await eventually(
        lambda: _is(people.count(), 3), 10, "three people in Ada's list"
    )
    text = await pages["ada"].locator("[data-people]").inner_text()
    assert "Ms Rivera" in text and "Ben Tanaka" in text and "in class" in text

    # Chat: a message from the teacher and one from Ben reach everyone and are stored.
    await pages["teacher"].get_by_role("textbox", name="Message").fill("Good morning! Cameras on, please.")
    await pages["teacher"].get_by_role("button", name="Send").click()
    await pages["ben"].get_by_role("textbox", name="Message").fill("Morning, Ms Rivera")
    await pages["ben"].keyboard.press("Enter")
    for name, page in pages.items():
        log = page.locator("[data-chat-log]")
        await eventually(
            lambda log=log: _contains(log, "Good morning! Cameras on", "Morning, Ms Rivera"),
            10,
            f"both messages in {name}'s chat",
        )
    conn = await asyncpg.connect(lesson.server.database_url)
    try:
        rows = await conn.fetch(
            "SELECT body, author_id FROM chats WHERE session_id = $1 ORDER BY created_at",
            uuid.UUID(lesson.session["id"]),
        )
    finally:
        await conn.close()
    assert [r["body"] for r in rows] == ["Good morning! Cameras on, please.", "Morning, Ms Rivera"]
    assert str(rows[0]["author_id"]) == lesson.cast["teacher"].id

    # A late page load gets the history.
    await pages["ada"].get_by_role("tab", name="Chat").click()
    ARTIFACTS.mkdir(exist_ok=True)
    await pages["ada"].screenshot(path=str(ARTIFACTS / "classroom.png"))


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _contains(locator: Any, *texts: str) -> bool:
    text = await locator.inner_text()
    return all(t in text for t in texts)
