"""The class's node dies, in headless Chromium: two in-process VTP apps sharing PostgreSQL
and Redis; the class is on node A, two students' pages came from node B. A goes away
without a goodbye (it stops answering and stops beating, but stays in the registry until
its entry expires, as after kill -9): both pages, failing to reach A, ask B again (no
"redirect loop" while B still names A), B finds that A's address refuses connections and
places the room on itself, and both decode each other's video again there within 10 s. (The
teacher's page, served by A, goes with it.)"""

from __future__ import annotations

import time
from typing import Any

import pytest
from browser import classroom_kit as kit
from browser.classroom_kit import browser_fixture  # noqa: F401  (module fixture)
from classroom_nodes import MARKS, nodes_fixture

from tests.support.waiting import eventually
from vtp.appkeys import NODES, PLACEMENT, SFU_KEY

pytestmark = MARKS
nodes = nodes_fixture(drain_timeout_s=0.0)  # (the nodes test_classroom_drain.py has)


async def _nothing() -> None:
    return None


async def _opened(server: kit.Server, room: str) -> bool:
    here = server.app[SFU_KEY].get_room(room)
    return here is not None and len(here.peers) > 0


async def test_when_the_class_node_dies_its_students_are_back_with_media_within_ten_seconds(
    nodes: tuple[kit.Server, kit.Server],
    browser: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = nodes
    teacher = await a.user("Ms Lund", role="teacher")
    ada = await b.user("Ada Park")
    ben = await b.user("Ben Ito")
    live = await a.live_session(teacher, [ada, ben])  # started through A: placed on A
    room = live["room_name"]
    assert await a.app[PLACEMENT].owner(room) == "node-a"
    # the teacher's page (A's) keeps the room open on A until A dies
    teacher_page = await kit.signed_in_page(browser, a, teacher)
    await teacher_page.goto(f"{a.base}/classroom/{live['id']}")
    await kit.join_class(teacher_page)
    await eventually(lambda: _opened(a, room), 15, "the room open on A with the teacher in it")
    pages = {
        key: await kit.signed_in_page(browser, b, user)
        for key, user in (("ada", ada), ("ben", ben))
    }
    for page in pages.values():
        await page.goto(f"{b.base}/classroom/{live['id']}")
        await kit.join_class(page)
    for key, page in pages.items():
        await eventually(lambda p=page: kit.decoding(p, 1), 30, f"{key} decoding on A")
    assert b.app[SFU_KEY].get_room(room) is None, (
        await a.app[PLACEMENT].owner(room),
        a.app[SFU_KEY].get_room(room),
    )

    # A dies: no goodbye to the registry (its entry expires after VTP_NODE_TTL_S), and
    # nothing answers at its address any more
    registry = a.app[NODES]
    monkeypatch.setattr(registry, "close", registry.stop_beating)
    monkeypatch.setattr(a.app[PLACEMENT], "release_all", _nothing)
    await teacher_page.close()
    died = time.monotonic()
    await a.stop()

    marks: dict[str, float] = {}

    async def media_on_b() -> Any:
        here = b.app[SFU_KEY].get_room(room)
        if here is not None:
            marks.setdefault(f"peers_{len(here.peers)}", time.monotonic() - died)
        if here is None or len(here.peers) < 2:
            return None
        for page in pages.values():
            if not await kit.decoding(page, 1, frames=1):
                return None
        return True

    await eventually(media_on_b, 10, "both students decoding each other again on B")
    back = time.monotonic() - died
    assert back < 10, (back, marks)
    assert await b.app[PLACEMENT].owner(room) == "node-b"
    for key, page in pages.items():
        stats = await kit.classroom_stats(page)
        assert stats["conn"] == "Connected", (key, stats)
        overlay = page.locator("[data-overlay-title]")
        assert not await overlay.is_visible(), (key, await overlay.inner_text())
    print(f"node death (Chromium): both students decoding on B {back:.1f} s after A died", marks)
    for page in pages.values():
        await page.context.close()
