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
    browser_fixture,  # noqa: F401  (module fixture)
    classroom_stats,
    decoding,
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


class Class:
    def __init__(self, srv: Server, session: dict[str, Any], cast: dict[str, User]) -> None:
        self.server = srv
        self.session = session
        self.cast = cast
        self.pages: dict[str, Any] = {}
        self.joined: set[str] = set()

    async def everyone_in(self) -> None:
        """Join the pages that have not joined yet (each test can run on its own)."""
        for key, page in self.pages.items():
            if key not in self.joined:
                await join_class(page)
                self.joined.add(key)
        for key, page in self.pages.items():
            await eventually(lambda p=page: decoding(p, 2), 30, f"{key} decoding two streams")

    @property
    def url(self) -> str:
        return f"{self.server.base}/classroom/{self.session['id']}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lesson(server: Server, browser: Any) -> Class:
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
    ARTIFACTS.mkdir(exist_ok=True)
    await teacher.screenshot(path=str(ARTIFACTS / "prejoin.png"))

    await lesson.everyone_in()
    for name, page in pages.items():
        stats = await eventually(lambda p=page: decoding(p, 2), 30, f"{name} decoding two streams")
        first = {s["streamId"]: s["framesDecoded"] for s in stats["sfu"]["subs"]}
        await asyncio.sleep(1.5)
        later = await classroom_stats(page)
        for sub in later["sfu"]["subs"]:
            if sub["framesDecoded"] <= first[sub["streamId"]] + 10:
                # what the publishers send and the other subscribers get tells a stall's
                # cause apart (publisher CPU adaptation, loss and keyframe recovery,
                # this subscriber's decoding)
                raise AssertionError(
                    f"{name} stalled on {sub['streamId']}: {first} -> {later['sfu']['subs']};"
                    f" everyone: {await _media_report(lesson)}"
                )
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
    # The active-speaker event lights a tile (the fake microphone beeps).
    await eventually(
        lambda: _is(pages["teacher"].locator(".tile.speaking .speaking-text").count(), 1),
        10,
        "a speaking indicator",
        every=0.1,
    )
    # Who is present (from the live channel), in everyone's People tab.
    await pages["ada"].get_by_role("tab", name="People").click()
    people = pages["ada"].locator("[data-people] .person")
    await eventually(lambda: _is(people.count(), 3), 10, "three people in Ada's list")
    text = await pages["ada"].locator("[data-people]").inner_text()
    assert "Ms Rivera" in text and "Ben Tanaka" in text and "in class" in text

    # Chat: a message from the teacher and one from Ben reach everyone and are stored.
    message_box = pages["teacher"].get_by_role("textbox", name="Message")
    await message_box.fill("Good morning! Cameras on, please.")
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

    await pages["ada"].get_by_role("tab", name="Chat").click()
    ARTIFACTS.mkdir(exist_ok=True)
    await pages["ada"].screenshot(path=str(ARTIFACTS / "classroom.png"))
    await pages["teacher"].get_by_role("tab", name="People").click()
    await pages["teacher"].screenshot(path=str(ARTIFACTS / "classroom-teacher.png"))
    # Phone width: the room still fits (controls, videos, then the side panel).
    await pages["ben"].set_viewport_size({"width": 390, "height": 844})

    async def fits() -> bool:
        width = await pages["ben"].evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width
        return True

    await eventually(fits, 5, "the room no wider than a phone")
    await pages["ben"].screenshot(path=str(ARTIFACTS / "classroom-phone.png"), full_page=True)
    await pages["ben"].set_viewport_size({"width": 1280, "height": 800})

    # The teacher moderates: Ben's message is deleted for everyone.
    await pages["teacher"].get_by_role("tab", name="Chat").click()
    await pages["teacher"].get_by_role("button", name="Delete the message from Ben Tanaka").click()
    for name, page in pages.items():
        log = page.locator("[data-chat-log]")
        await eventually(
            lambda log=log: _contains(log, "Message deleted"), 10, f"deleted for {name}"
        )
        assert "Morning, Ms Rivera" not in await log.inner_text(), name
    assert await pages["ada"].get_by_role("button", name="Delete the message from Ben").count() == 0


async def _media_report(lesson: Class) -> dict[str, Any]:
    report = {}
    for key, page in lesson.pages.items():
        stats = await classroom_stats(page)
        report[key] = {"pubs": stats["sfu"]["pubs"], "subs": stats["sfu"]["subs"]}
    return report


async def test_teacher_screen_share_is_large_for_students(lesson: Class) -> None:
    teacher, ada = lesson.pages["teacher"], lesson.pages["ada"]
    await lesson.everyone_in()
    await teacher.get_by_role("button", name="Share screen").click()
    await eventually(
        lambda: _is(teacher.get_by_role("button", name="Stop sharing").count(), 1),
        10,
        "the Share button turned into Stop sharing",
    )
    for name in ("ada", "ben"):
        page = lesson.pages[name]
        # Three streams now: the teacher's camera and screen, the other student's camera.
        await eventually(lambda p=page: decoding(p, 3, frames=5), 20, f"{name} decoding 3")

        async def screen_is_featured(page: Any = page) -> dict[str, Any] | None:
            stats = await classroom_stats(page)
            screens = [v for v in stats["videos"] if v["key"].startswith("screen:")]
            if len(screens) == 1 and screens[0]["featured"] and screens[0]["playing"]:
                return screens[0]
            return None

        screen = await eventually(screen_is_featured, 15, f"the screen featured for {name}")
        assert screen["videoWidth"] > 0 and screen["name"] == "Ms Rivera's screen", screen
        others = [v for v in (await classroom_stats(page))["videos"] if not v["featured"]]
        # Large: wider than every other tile, and most of the video area.
        assert all(screen["width"] > 2 * v["width"] for v in others), (screen, others)
        assert screen["width"] > 600, screen
    await ada.screenshot(path=str(ARTIFACTS / "classroom-screen-share.png"))
    await teacher.get_by_role("button", name="Stop sharing").click()

    async def camera_back(page: Any = ada) -> bool:
        stats = await classroom_stats(page)
        featured = [v for v in stats["videos"] if v["featured"]]
        return len(featured) == 1 and featured[0]["name"].startswith("Ms Rivera")

    await eventually(camera_back, 10, "the teacher's camera featured again")


async def test_closed_websocket_recovers_video(lesson: Class) -> None:
    ben, teacher = lesson.pages["ben"], lesson.pages["teacher"]
    await lesson.everyone_in()
    before = {s["id"] for s in (await classroom_stats(ben))["sfu"]["subs"]}
    # A close frame ends the peer at once (only a socket that drops is resumable): the
    # page says so, then rejoins, republishes and resubscribes.
    # (every text the connection indicator shows: the reconnect may take only ms)
    await ben.evaluate(
        """() => { const el = document.querySelector('[data-conn]'); window.connShown = [];
        new MutationObserver(() => window.connShown.push(el.textContent))
            .observe(el, {childList: true, characterData: true, subtree: true}); }"""
    )
    await ben.evaluate("vtpClassroom.state.sfu.ws.close()")

    async def reconnecting_shown() -> bool:
        shown = await ben.evaluate("window.connShown")
        return any("Reconnecting" in text for text in shown)

    await eventually(reconnecting_shown, 5, "Reconnecting shown")
    started = asyncio.get_running_loop().time()

    async def recovered() -> dict[str, Any]:
        stats = await decoding(ben, 2, frames=15)
        if not stats or stats["sfu"]["reconnects"] < 1 or stats["conn"] != "Connected":
            return {}
        new = {s["id"] for s in stats["sfu"]["subs"]}
        return stats if not new & before else {}

    stats = await eventually(recovered, 10, "Ben decoding again after the reconnect")
    took = asyncio.get_running_loop().time() - started
    assert stats["conn"] == "Connected" and took < 10, (took, stats)
    ben_tile = [v for v in stats["videos"] if v["key"].startswith("peer:")]
    assert len(ben_tile) == 2 and all(v["playing"] for v in ben_tile), stats["videos"]

    # The others see Ben's new stream too (his old one ended with his old peer).
    async def teacher_sees_ben() -> bool:
        stats = await classroom_stats(teacher)
        tiles = [v for v in stats["videos"] if v["name"] == "Ben Tanaka"]
        return len(tiles) == 1 and tiles[0]["playing"] and not tiles[0]["noVideo"]

    await eventually(teacher_sees_ben, 10, "the teacher sees Ben again")
    await eventually(lambda: decoding(teacher, 2), 10, "the teacher decoding two again")

    # The server drops Ben's connections: a subscription, then his publication, then
    # his whole peer. Each time his page puts things back by itself.
    from vtp.signalling.members import MEMBERS

    members = lesson.server.app[MEMBERS]
    room = lesson.session["room_name"]
    ben_id = uuid.UUID(lesson.cast["ben"].id)

    def ben_member() -> Any:
        [member] = [m for m in members.in_room(room) if m.user_id == ben_id and m.via == "ws"]
        return member

    old_sub = _sub_id(ben_member())
    await ben_member().peer.close_connection(old_sub)

    async def resubscribed() -> bool:
        stats = await decoding(ben, 2, frames=15)
        return bool(stats) and old_sub not in {s["id"] for s in stats["sfu"]["subs"]}

    await eventually(resubscribed, 10, "Ben resubscribed")
    [old_pub] = [c for c in ben_member().peer.connections if c not in _sub_ids(ben_member())]
    await ben_member().peer.close_connection(old_pub)

    async def teacher_decodes_bens_new_stream() -> bool:
        stats = await decoding(teacher, 2, frames=15)
        ids = {s["streamId"] for s in stats["sfu"]["subs"]} if stats else {old_pub}
        return old_pub not in ids

    await eventually(teacher_decodes_bens_new_stream, 10, "Ben republished for the teacher")
    await eventually(teacher_sees_ben, 10, "the teacher sees Ben's new stream")
    await ben_member().peer.leave("connection reset by the test")
    await eventually(
        lambda: _contains(ben.locator("[data-conn]"), "Connected"), 10, "Ben back in the room"
    )
    await eventually(lambda: decoding(ben, 2, frames=15), 15, "Ben decoding after his peer went")
    await eventually(teacher_sees_ben, 10, "the teacher sees Ben after his peer went")

    await teacher.get_by_role("tab", name="Chat").click()
    await teacher.get_by_role("textbox", name="Message").fill("Turn to page 42, please")
    await teacher.keyboard.press("Enter")
    await eventually(
        lambda: _contains(ben.locator("[data-chat-log]"), "page 42"), 10, "the message live"
    )
    # A reload (everything dropped at once) rejoins, with the chat history loaded.
    await ben.reload()
    await join_class(ben)
    await eventually(lambda: decoding(ben, 2), 15, "Ben decoding after a reload")
    log = ben.locator("[data-chat-log]")
    await eventually(
        lambda: _contains(log, "Turn to page 42, please"),
        10,
        "the chat history after the reload",
    )


async def test_hand_mute_remove_and_end(lesson: Class) -> None:
    teacher, ada, ben = lesson.pages["teacher"], lesson.pages["ada"], lesson.pages["ben"]
    await lesson.everyone_in()
    # Ada raises her hand: the teacher sees her in the queue.
    await ada.get_by_role("button", name="Raise hand").click()
    await eventually(
        lambda: _is(ada.get_by_role("button", name="Lower hand").count(), 1), 5, "Lower hand"
    )
    await teacher.get_by_role("tab", name="People").click()
    queue = teacher.locator("[data-hand-queue]")
    await eventually(lambda: _contains(queue, "Ada Okafor"), 5, "Ada in the teacher's queue")
    assert await teacher.get_by_role("heading", name="Raised hands").is_visible()
    await teacher.screenshot(path=str(ARTIFACTS / "classroom-hands.png"))
    # Her camera off: the others see her initials instead of (black) video, then video again.
    await ada.get_by_role("button", name="Stop video").click()
    ada_tile = ben.locator('.tile:has-text("Ada Okafor")')
    await eventually(lambda: _has_class(ada_tile, "no-video"), 5, "Ada's camera shown off to Ben")
    assert await ada_tile.locator(".avatar").inner_text() == "AO"
    assert await ada_tile.locator(".avatar").is_visible()
    await ada.get_by_role("button", name="Start video").click()
    await eventually(lambda: _not(_has_class(ada_tile, "no-video")), 5, "Ada's camera back for Ben")
    # Keyboard: M mutes and unmutes (outside text fields); the others see it.
    await ben.locator("body").click(position={"x": 5, "y": 400})
    await ben.keyboard.press("m")
    ben_row = teacher.locator('[data-people] .person:has-text("Ben Tanaka")')
    await eventually(
        lambda: _is(ben_row.locator(".icon-mic.is-off").count(), 1), 5, "Ben muted by M"
    )
    await ben.keyboard.press("m")
    await eventually(
        lambda: _is(ben_row.locator(".icon-mic.is-off").count(), 0), 5, "Ben unmuted by M"
    )
    # The teacher mutes her: her page turns the microphone off and tells her who did.
    await teacher.get_by_role("button", name="Mute Ada Okafor").click()
    await eventually(
        lambda: _is(ada.get_by_role("button", name="Unmute").count(), 1), 5, "Ada muted"
    )
    assert "off" in (await ada.locator("[data-mic]").get_attribute("class") or "")
    notice = await ada.locator("[data-notice]").inner_text()
    assert "Ms Rivera turned off your microphone" in notice, notice
    # (the SFU withholds her audio now, whatever her page does)
    from vtp.signalling.members import MEMBERS

    members = lesson.server.app[MEMBERS].in_room(lesson.session["room_name"])
    ada_peers = [m.peer for m in members if str(m.user_id) == lesson.cast["ada"].id]
    assert ada_peers and all(p.muted == {"audio"} for p in ada_peers)
    ada_row = teacher.locator('[data-people] .person:has-text("Ada Okafor")')
    await eventually(
        lambda: _is(ada_row.locator(".icon-mic.is-off").count(), 1), 5, "Ada shown muted"
    )
    await eventually(
        lambda: _is(ben.locator('.tile:has-text("Ada Okafor") .mic-off:not([hidden])').count(), 1),
        5,
        "Ada's tile shows the muted microphone to Ben",
    )
    # Recording: the teacher starts it, everyone sees that the class is being recorded.
    assert await ada.locator("[data-record]").is_hidden()
    record = teacher.get_by_role("button", name="Record")
    assert await record.get_attribute("aria-disabled") == "false"
    await record.click()
    for page in (teacher, ada, ben):
        await page.locator("[data-rec-badge]").filter(has_text="Recording").wait_for(timeout=5000)
    await teacher.get_by_role("button", name="Stop recording").click()
    await ben.locator("[data-rec-badge]").wait_for(state="hidden", timeout=5000)

    # The teacher removes Ada with a reason: she sees it, the others stop seeing her.
    await teacher.get_by_role("button", name="Remove Ada Okafor").click()
    await teacher.get_by_label("Reason (they will see it)").fill("Please rejoin from a quiet room")
    await teacher.get_by_role("button", name="Remove", exact=True).click()
    overlay = ada.locator("[data-overlay]")
    await overlay.wait_for(state="visible", timeout=5000)
    assert "You were removed from the class" in await overlay.inner_text()
    assert "Please rejoin from a quiet room" in await overlay.inner_text()

    async def gone_for(page: Any) -> bool:
        stats = await classroom_stats(page)
        return not [v for v in stats["videos"] if v["name"].startswith("Ada")]

    await eventually(lambda: gone_for(teacher), 5, "Ada's tile gone for the teacher")
    await eventually(lambda: gone_for(ben), 5, "Ada's tile gone for Ben")
    # Nothing runs behind the overlay: no "Connecting…", no clock.
    assert await ada.locator("[data-conn]").inner_text() == "Removed"
    assert await ada.locator("[data-clock]").is_hidden()
    # She cannot come back to this session: reopening the page says so at once (no
    # pre-join screen with Join enabled).
    await ada.reload()
    await overlay.wait_for(state="visible", timeout=5000)
    text = await overlay.inner_text()
    assert "You were removed from this class: Please rejoin from a quiet room." in text, text
    assert await overlay.get_attribute("data-reason") == "removed"
    assert await ada.locator("[data-prejoin]").is_hidden()
    assert await ada.locator("[data-join]").is_disabled()
    assert await ada.locator("[data-conn]").inner_text() == "Removed"
    assert await ada.locator("[data-clock]").is_hidden()
    await ada.screenshot(path=str(ARTIFACTS / "classroom-removed.png"))

    # The teacher ends the class for everyone.
    await teacher.get_by_role("button", name="End for all").click()
    await teacher.get_by_role("button", name="End class").click()
    ben_overlay = ben.locator("[data-overlay]")
    await ben_overlay.wait_for(state="visible", timeout=5000)
    assert "The class has ended" in await ben_overlay.inner_text()
    session = await lesson.server.call(
        "GET", f"/api/v1/sessions/{lesson.session['id']}", lesson.cast["teacher"]
    )
    assert session["status"] == "ended"
    attendance = await lesson.server.call(
        "GET", f"/api/v1/sessions/{lesson.session['id']}/attendance", lesson.cast["teacher"]
    )
    seconds = {a["display_name"]: a["attended_seconds"] for a in attendance["items"]}
    assert set(seconds) == {"Ms Rivera", "Ada Okafor", "Ben Tanaka"}, attendance
    assert all(s > 0 for s in seconds.values()), seconds
    recordings = await lesson.server.call(
        "GET", f"/api/v1/sessions/{lesson.session['id']}/recordings", lesson.cast["teacher"]
    )
    assert len(recordings["items"]) == 1, recordings
    # The teacher's dashboard lists it; once processed it plays.
    await teacher.goto(lesson.server.base + "/dashboard")
    watch = teacher.get_by_role("button", name="Watch Photosynthesis")

    async def listed_and_ready() -> bool:
        if await watch.count():
            return True
        await teacher.reload()
        await teacher.locator("[data-recordings]").filter(has_text="Photosynthesis").wait_for()
        return False

    await eventually(listed_and_ready, 30, "the recording ready to watch", every=1)
    await watch.click()
    video = teacher.locator("[data-player-video]")
    await eventually(
        lambda: video.evaluate("v => v.readyState >= 1 && v.duration > 0"),
        10,
        "the recording's metadata loaded",
    )


def _sub_ids(member: Any) -> list[str]:
    from vtp.sfu.downconnection import DownConnection

    return [cid for cid, c in member.peer.connections.items() if isinstance(c, DownConnection)]


def _sub_id(member: Any) -> str:
    return _sub_ids(member)[0]


async def _has_class(locator: Any, name: str) -> bool:
    return name in ((await locator.get_attribute("class")) or "").split()


async def _not(value: Any) -> bool:
    return not await value


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _contains(locator: Any, *texts: str) -> bool:
    text = await locator.inner_text()
    return all(t in text for t in texts)
