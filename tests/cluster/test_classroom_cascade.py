"""A lecture through a cascade, in headless Chromium: two in-process VTP apps sharing real
PostgreSQL and Redis, with VTP_CASCADE_PEERS=1. The teacher publishes her camera (three
simulcast layers) on node A, where the class is; a student whose page node B serves, and
who may not publish, is served from B's copy of the room (one relayed copy of each
stream) and decodes the teacher. When the teacher lets students publish, the student's
page publishes: B's copy refuses it (relayed_room), so the page joins again saying it
publishes, is relayed to A, and the teacher decodes the student."""

from __future__ import annotations

from typing import Any

from browser import classroom_kit as kit
from browser.classroom_kit import browser_fixture  # noqa: F401  (module fixture)
from classroom_nodes import MARKS, nodes_fixture

from tests.support.waiting import eventually
from vtp.appkeys import NODES, SFU_KEY

pytestmark = MARKS
nodes = nodes_fixture(cascade_peers=1)


async def test_a_student_served_through_a_cascade_watches_then_speaks(
    nodes: tuple[kit.Server, kit.Server], browser: Any
) -> None:
    a, b = nodes
    teacher = await a.user("Ms Rivera", role="teacher")
    ada = await b.user("Ada Okafor")
    live = await a.live_session(teacher, [ada], students_may_publish=False)
    room = live["room_name"]
    pages = {
        "teacher": await kit.signed_in_page(browser, a, teacher),
        "ada": await kit.signed_in_page(browser, b, ada),
    }
    await pages["teacher"].goto(f"{a.base}/classroom/{live['id']}")
    await kit.join_class(pages["teacher"])

    async def teacher_publishing_on_a() -> bool:
        sfu_room = a.app[SFU_KEY].get_room(room)
        origin = await b.app[NODES].node("node-a")  # (A's load as B sees it)
        return bool(sfu_room and sfu_room.streams() and origin and origin.peers >= 1)

    await eventually(teacher_publishing_on_a, 20, "the teacher publishing on A, A loaded")

    await pages["ada"].goto(f"{b.base}/classroom/{live['id']}")
    await kit.join_class(pages["ada"])
    await eventually(lambda: kit.decoding(pages["ada"], 1), 30, "Ada decoding the teacher")
    edge = b.app[SFU_KEY].get_room(room)
    assert edge is not None and edge.origin == "node-a"  # served from B's copy
    origin_room = a.app[SFU_KEY].get_room(room)
    assert origin_room is not None
    assert [p.id for p in origin_room.peers.values() if p.relay] == ["cascade-node-b"]
    assert len(origin_room.peers) == 2  # the teacher, B's relay peer: not Ada

    # students may publish now: Ada's camera goes out, served where the class is
    await a.call(
        "PATCH", f"/api/v1/sessions/{live['id']}", teacher, json={"students_may_publish": True}
    )

    async def ada_on_a() -> bool:
        return len(origin_room.peers) == 3 and len(origin_room.streams()) == 2

    await eventually(ada_on_a, 20, "Ada's peer and camera on A")
    await eventually(lambda: kit.decoding(pages["teacher"], 1), 30, "the teacher decoding Ada")
    await eventually(lambda: kit.decoding(pages["ada"], 1), 30, "Ada decoding the teacher again")
    for key, page in pages.items():
        stats = await kit.classroom_stats(page)
        assert stats["conn"] == "Connected", (key, stats)
    for page in pages.values():
        await page.context.close()
