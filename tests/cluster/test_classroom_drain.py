"""A class on a draining node, in headless Chromium: two in-process VTP apps sharing real
PostgreSQL and Redis; the teacher and a student are in a class on node A (their pages
came from A). A drains (vtp.drain, with no time left for the class): the room is placed on
B, and both pages follow - the SFU socket to the URL of ``reconnect``, the live channel to
that of ``room_elsewhere`` - and each decodes the other's video again, on B."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from browser.classroom_kit import (
    Server,
    browser_fixture,  # noqa: F401  (module fixture)
    classroom_stats,
    decoding,
    serve,
    signed_in_page,
)

from tests.support.chromium import needs_chromium
from tests.support.waiting import eventually
from vtp.appkeys import PLACEMENT, SFU_KEY
from vtp.drain import Drain
from vtp.web.live import LIVE_ROOMS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    needs_chromium,
    pytest.mark.asyncio(loop_scope="module"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nodes(
    pg_template: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Server, Server]]:
    ports = {"node-a": _free_port(), "node-b": _free_port()}

    def settings(name: str) -> dict[str, Any]:
        return {
            "port": ports[name],
            "cluster": True,
            "node_id": name,
            "node_url": f"http://127.0.0.1:{ports[name]}",
            "region": f"region-{name}",  # the room goes where it is opened
            "drain_timeout_s": 0.0,  # a drain sends the class elsewhere at once
        }

    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            serve(pg_template, tmp_path_factory.mktemp("node-a"), **settings("node-a"))
        )
        b = await stack.enter_async_context(
            serve(
                pg_template, tmp_path_factory.mktemp("node-b"), share_with=a, **settings("node-b")
            )
        )
        yield a, b


async def _join(page: Any) -> None:
    button = page.get_by_role("button", name="Join class")
    await button.wait_for()
    await eventually(button.is_enabled, 15, "the Join button enabled")
    await button.click()


async def test_the_class_follows_its_room_off_a_draining_node(
    nodes: tuple[Server, Server], browser: Any
) -> None:
    a, b = nodes
    teacher = await a.user("Ms Rivera", role="teacher")
    ada = await a.user("Ada Okafor")
    live = await a.live_session(teacher, [ada])
    room = live["room_name"]
    assert await a.app[PLACEMENT].owner(room) == "node-a"
    pages = {
        "teacher": await signed_in_page(browser, a, teacher),
        "ada": await signed_in_page(browser, a, ada),
    }
    sockets: dict[str, list[str]] = {key: [] for key in pages}
    for key, page in pages.items():
        page.on("websocket", lambda ws, key=key: sockets[key].append(ws.url))
        await page.goto(f"{a.base}/classroom/{live['id']}")
        await _join(page)
    for key, page in pages.items():
        await eventually(lambda p=page: decoding(p, 1), 30, f"{key} decoding on A")

    await Drain(a.app).run()
    moved = time.monotonic()
    assert await a.app[PLACEMENT].owner(room) == "node-b"

    async def both_on_b() -> bool:
        sfu_room = b.app[SFU_KEY].get_room(room)
        return sfu_room is not None and len(sfu_room.peers) == 2

    await eventually(both_on_b, 15, "both peers in the room on B")
    for key, page in pages.items():
        await eventually(lambda p=page: decoding(p, 1), 20, f"{key} decoding on B")
    media_again = time.monotonic() - moved
    b_ws = b.base.replace("http", "ws")
    for key in pages:
        on_b = [url for url in sockets[key] if url.startswith(b_ws)]
        assert any("/api/v1/sfu/ws" in url for url in on_b), sockets[key]
        assert any("/live" in url for url in on_b), sockets[key]
    live_room = b.app[LIVE_ROOMS].rooms[uuid.UUID(live["id"])]
    assert {str(u) for u in live_room.participants} == {teacher.id, ada.id}
    sfu_room = a.app[SFU_KEY].get_room(room)
    assert sfu_room is None or not sfu_room.peers
    for key, page in pages.items():
        stats = await classroom_stats(page)
        assert stats["conn"] == "Connected", (key, stats)
        assert stats["live"] == "connected", (key, stats)
    print(f"drain (Chromium): both decoding on B {media_again:.1f} s after the drain")
    for page in pages.values():
        await page.context.close()
