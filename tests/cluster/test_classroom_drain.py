"""A class on a draining node, in headless Chromium: two in-process VTP apps sharing real
PostgreSQL and Redis; the teacher and a student are in a class on node A (their pages
came from A). A drains (vtp.drain, with no time left for the class): the room is placed on
B, and both pages follow - the SFU socket to the URL of ``reconnect``, the live channel to
that of ``room_elsewhere`` - and each decodes the other's video again, on B. The teacher's
page was served before A knew of B (its Content-Security-Policy does not name B): its
sockets to B are blocked, so it takes the way through its own node, which relays."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from browser import classroom_kit as kit
from browser.classroom_kit import browser_fixture  # noqa: F401  (module fixture)
from classroom_nodes import MARKS, nodes_fixture

from tests.support.waiting import eventually
from vtp.appkeys import NODES, PLACEMENT, SFU_KEY
from vtp.drain import Drain
from vtp.web.live import LIVE_ROOMS

pytestmark = MARKS
nodes = nodes_fixture(drain_timeout_s=0.0)  # a drain sends the class elsewhere at once


async def test_the_class_follows_its_room_off_a_draining_node(
    nodes: tuple[kit.Server, kit.Server], browser: Any
) -> None:
    a, b = nodes
    teacher = await a.user("Ms Rivera", role="teacher")
    ada = await a.user("Ada Okafor")
    live = await a.live_session(teacher, [ada])
    room = live["room_name"]
    assert await a.app[PLACEMENT].owner(room) == "node-a"
    pages = {
        "teacher": await kit.signed_in_page(browser, a, teacher),
        "ada": await kit.signed_in_page(browser, a, ada),
    }
    sockets: dict[str, list[str]] = {key: [] for key in pages}
    for key, page in pages.items():
        page.on("websocket", lambda ws, key=key: sockets[key].append(ws.url))
        with _knowing_only_itself(a) if key == "teacher" else contextlib.nullcontext():
            served = await page.goto(f"{a.base}/classroom/{live['id']}")
        connect_src = served.headers["content-security-policy"].split("connect-src")[1]
        assert (b.base in connect_src) is (key == "ada"), connect_src
        await kit.join_class(page)
    for key, page in pages.items():
        await eventually(lambda p=page: kit.decoding(p, 1), 30, f"{key} decoding on A")

    await Drain(a.app).run()
    moved = time.monotonic()
    assert await a.app[PLACEMENT].owner(room) == "node-b"

    async def both_on_b() -> bool:
        sfu_room = b.app[SFU_KEY].get_room(room)
        return sfu_room is not None and len(sfu_room.peers) == 2

    await eventually(both_on_b, 15, "both peers in the room on B")
    for key, page in pages.items():
        await eventually(lambda p=page: kit.decoding(p, 1), 20, f"{key} decoding on B")
    media_again = time.monotonic() - moved
    b_ws = b.base.replace("http", "ws")
    a_ws = a.base.replace("http", "ws")
    # Ada's page went to B; the teacher's (its sockets to B blocked) through A, relayed
    for key, node in (("ada", b_ws), ("teacher", a_ws)):
        moved_to = [url for url in sockets[key][2:] if url.startswith(node)]
        assert any("/api/v1/sfu/ws" in url for url in moved_to), sockets[key]
        assert any("/live" in url for url in moved_to), sockets[key]
    assert not any(url.startswith(b_ws) for url in sockets["teacher"]), sockets["teacher"]
    live_room = b.app[LIVE_ROOMS].rooms[uuid.UUID(live["id"])]
    assert {str(u) for u in live_room.participants} == {teacher.id, ada.id}
    sfu_room = a.app[SFU_KEY].get_room(room)
    assert sfu_room is None or not sfu_room.peers
    for key, page in pages.items():
        stats = await kit.classroom_stats(page)
        assert stats["conn"] == "Connected", (key, stats)
        assert stats["live"] == "connected", (key, stats)
    print(f"drain (Chromium): both decoding on B {media_again:.1f} s after the drain")
    for page in pages.values():
        await page.context.close()


@contextlib.contextmanager
def _knowing_only_itself(node: kit.Server) -> Iterator[None]:
    """Pages served meanwhile are as the node served them before other nodes joined."""
    registry = node.app[NODES]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "urls", frozenset({node.base}))
        patch.setattr(registry, "refresh_urls", _not_now)
        yield


async def _not_now() -> None:
    pass
