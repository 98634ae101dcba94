"""Adaptive stream, dynacast and paging in the browser client (headless Chromium): a
teacher and a student, the teacher's camera published as three simulcast encodings.

What the student's page shows decides what it receives (the smallest encoding covering
the rendered size; nothing for a video not shown), and what no one receives the
teacher's browser stops encoding. Tests share one lesson and run in file order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import pytest_asyncio
from classroom_kit import (
    Server,
    browser_fixture,  # noqa: F401  (module fixture)
    classroom_stats,
    join_class,
    server_fixture,  # noqa: F401  (module fixture)
    signed_in_page,
)

from tests.support.chromium import needs_chromium
from tests.support.waiting import eventually

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    needs_chromium,
    pytest.mark.asyncio(loop_scope="module"),
]


class Lesson:
    def __init__(self, teacher: Any, student: Any, teacher_stream: str) -> None:
        self.teacher = teacher
        self.student = student
        self.teacher_stream = teacher_stream


async def sub_of(page: Any, stream_id: str) -> dict[str, Any]:
    stats = await classroom_stats(page)
    [sub] = [s for s in stats["sfu"]["subs"] if s["streamId"] == stream_id]
    return sub


async def camera_encodings(page: Any) -> dict[str, dict[str, Any]]:
    stats = await classroom_stats(page)
    [camera] = [p for p in stats["sfu"]["pubs"] if p["label"] == "camera"]
    return {e["rid"]: e for e in camera.get("encodings") or []}


async def steady(read: Any, settle: float = 1.0, window: float = 1.5) -> tuple[Any, Any]:
    """Two readings `window` seconds apart, after `settle` seconds."""
    await asyncio.sleep(settle)
    first = await read()
    await asyncio.sleep(window)
    return first, await read()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lesson(server: Server, browser: Any) -> Lesson:
    teacher_user = await server.user("Ms Rivera", role="teacher")
    student_user = await server.user("Ada Okafor")
    session = await server.live_session(teacher_user, [student_user])
    url = f"{server.base}/classroom/{session['id']}"
    teacher = await signed_in_page(browser, server, teacher_user)
    # the tests restyle the student's page to resize and hide tiles: injected <style>
    # tags are what the page's Content-Security-Policy forbids, so this context bypasses it
    student = await signed_in_page(browser, server, student_user, bypass_csp=True)
    for page in (teacher, student):
        await page.goto(url)
        await join_class(page)

    async def teacher_stream() -> str | None:
        stats = await classroom_stats(student)
        featured = [v for v in stats["videos"] if v["featured"] and v["streamId"]]
        return featured[0]["streamId"] if featured else None

    stream_id = await eventually(teacher_stream, 30, "the teacher's camera on Ada's stage")
    return Lesson(teacher, student, stream_id)


async def test_the_stage_gets_a_large_encoding_a_small_tile_the_smallest(lesson: Lesson) -> None:
    student, stream = lesson.student, lesson.teacher_stream

    async def large() -> dict[str, Any] | None:
        sub = await sub_of(student, stream)
        return sub if sub["frameWidth"] >= 640 and sub["framesDecoded"] > 10 else None

    await eventually(large, 30, "the teacher's camera decoded at 640 px or more")
    encodings = await camera_encodings(lesson.teacher)
    assert encodings["f"]["active"]
    # each encoding has three temporal layers (the SFU can send a lower frame rate)
    assert {e["scalabilityMode"] for e in encodings.values()} == {"L1T3"}, encodings

    # Ada's stage shrinks to 160x90: the server switches her to the 320x180 encoding
    await student.add_style_tag(
        content=".stage .tile { flex: 0 0 160px !important; height: 90px !important; }"
    )

    async def small() -> dict[str, Any] | None:
        sub = await sub_of(student, stream)
        return sub if sub["frameWidth"] == 320 else None

    before = await eventually(small, 15, "the teacher's camera decoded at 320 px")
    await eventually(
        lambda: _more_frames(student, stream, before["framesDecoded"] + 15), 10, "decoding on"
    )

    # No one shows the teacher larger than 160 px: her browser stops the upper encodings
    async def upper_off() -> dict[str, Any] | None:
        enc = await camera_encodings(lesson.teacher)
        return enc if not enc["f"]["active"] and not enc["h"]["active"] else None

    await eventually(upper_off, 10, "the teacher's h and f encodings inactive")
    first, later = await steady(lambda: camera_encodings(lesson.teacher))
    assert later["f"]["bytesSent"] == first["f"]["bytesSent"], (first, later)
    assert later["q"]["bytesSent"] > first["q"]["bytesSent"], (first, later)


async def test_a_hidden_video_gets_no_packets_and_comes_back(lesson: Lesson) -> None:
    student, stream = lesson.student, lesson.teacher_stream
    hide = await student.add_style_tag(content="[data-stage] { display: none !important; }")
    first, later = await steady(lambda: sub_of(student, stream), settle=1.5)
    assert later["videoBytes"] == first["videoBytes"], (first, later)
    assert later["audioPackets"] > first["audioPackets"], (first, later)  # audio goes on

    # nobody needs any encoding of the teacher's camera now
    async def all_off() -> dict[str, Any] | None:
        enc = await camera_encodings(lesson.teacher)
        return enc if not any(e["active"] for e in enc.values()) else None

    await eventually(all_off, 10, "every encoding of the teacher's camera inactive")

    await hide.evaluate("(el) => el.remove()")
    await student.evaluate(
        "document.querySelectorAll('style').forEach((s) => { if (s.textContent.includes"
        "('.stage .tile')) s.remove(); })"
    )
    back = await sub_of(student, stream)

    async def large_again() -> dict[str, Any] | None:
        sub = await sub_of(student, stream)
        ok = sub["framesDecoded"] > back["framesDecoded"] + 15 and sub["frameWidth"] >= 640
        return sub if ok else None

    again = await eventually(large_again, 20, "the teacher's camera large again")
    # (the encoding Ada decodes is active again; the ones no one needs are not)
    rid = "f" if again["frameWidth"] >= 1280 else "h"
    assert (await camera_encodings(lesson.teacher))[rid]["active"]


async def test_a_muted_microphone_sends_nothing(lesson: Lesson) -> None:
    student = lesson.student

    async def audio_sent() -> int:
        stats = await classroom_stats(student)
        [camera] = [p for p in stats["sfu"]["pubs"] if p["label"] == "camera"]
        return int(camera.get("audioPacketsSent") or 0)

    assert await audio_sent() > 0
    await student.get_by_role("button", name="Mute").click()
    first, later = await steady(audio_sent, settle=0.5)
    assert later == first, (first, later)
    await student.get_by_role("button", name="Unmute").click()
    unmuted = await audio_sent()
    await eventually(
        lambda: _bigger(audio_sent(), unmuted + 20), 10, "audio packets sent after unmuting"
    )


async def test_tiles_beyond_one_page_are_paged_and_not_received(lesson: Lesson) -> None:
    teacher = lesson.teacher
    # A short, narrow window holds one grid tile: me on page 1, Ada on page 2.
    await teacher.set_viewport_size({"width": 820, "height": 420})

    async def two_pages() -> dict[str, Any] | None:
        stats = await classroom_stats(teacher)
        return stats if stats["pages"] == 2 else None

    stats = await eventually(two_pages, 10, "two pages of tiles")
    [ada] = [v for v in stats["videos"] if v["name"] == "Ada Okafor"]
    assert ada["hidden"] and ada["streamId"], stats["videos"]
    assert await teacher.get_by_text("Page 1 of 2").is_visible()
    first, later = await steady(lambda: sub_of(teacher, ada["streamId"]), settle=1.5)
    assert later["videoBytes"] == first["videoBytes"], (first, later)

    await teacher.get_by_role("button", name="Next page").click()
    await teacher.get_by_text("Page 2 of 2").wait_for()

    async def ada_playing() -> dict[str, Any] | None:
        sub = await sub_of(teacher, ada["streamId"])
        stats = await classroom_stats(teacher)
        [tile] = [v for v in stats["videos"] if v["name"] == "Ada Okafor"]
        ok = not tile["hidden"] and sub["framesDecoded"] > later["framesDecoded"] + 15
        return sub if ok else None

    await eventually(ada_playing, 15, "Ada's video on page 2")
    mine = [v for v in (await classroom_stats(teacher))["videos"] if v["key"] == "me"]
    assert mine[0]["hidden"], mine
    await teacher.set_viewport_size({"width": 1280, "height": 800})
    await eventually(lambda: _pages(teacher, 1), 10, "one page again")


async def _more_frames(page: Any, stream_id: str, frames: int) -> bool:
    return bool((await sub_of(page, stream_id))["framesDecoded"] >= frames)


async def _bigger(value: Any, minimum: int) -> bool:
    return bool(await value >= minimum)


async def _pages(page: Any, pages: int) -> bool:
    return bool((await classroom_stats(page))["pages"] == pages)
