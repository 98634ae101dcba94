"""A class across two nodes in headless Chromium: two in-process VTP apps sharing real
PostgreSQL and Redis (VTP_TEST_REDIS_URL), each with its own HTTP port and SFU. The teacher
starts the class on node A (its room is placed there); a student whose page node B serves
keeps both her WebSockets on B - the SFU signalling and the classroom live channel - which
relays them to A (her media goes to A): each decodes the other's video, both see both
participants in the People tab, and chat posted through either node's API reaches both
(relayed between the nodes over Redis)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from browser import classroom_kit as kit
from browser.classroom_kit import browser_fixture  # noqa: F401  (module fixture)
from classroom_nodes import MARKS, nodes_fixture

from tests.support.waiting import eventually
from vtp.appkeys import PLACEMENT, SFU_KEY
from vtp.channel.relay import RELAY
from vtp.web.live import LIVE_ROOMS

pytestmark = MARKS
nodes = nodes_fixture()


async def _chat_shows(page: Any, *texts: str) -> bool:
    log = await page.locator("[data-chat-log]").inner_text()
    return all(text in log for text in texts)


async def _two_people(page: Any) -> bool:
    return bool(await page.locator("[data-people] .person").count() == 2)


async def test_a_student_on_node_b_meets_the_teacher_on_node_a(
    nodes: tuple[kit.Server, kit.Server], browser: Any
) -> None:
    a, b = nodes
    teacher = await a.user("Ms Rivera", role="teacher")
    ada = await b.user("Ada Okafor")
    live = await a.live_session(teacher, [ada])  # started through A: placed on A
    room = live["room_name"]
    assert await a.app[PLACEMENT].owner(room) == "node-a"

    pages = {
        "teacher": await kit.signed_in_page(browser, a, teacher),
        "ada": await kit.signed_in_page(browser, b, ada),
    }
    socket_urls: dict[str, list[str]] = {"teacher": [], "ada": []}
    blocked: list[str] = []
    # what Ada's page sends and hears on each socket: ("sent" | "received", url, message)
    ada_frames: list[tuple[str, str, dict[str, Any]]] = []

    def watch_frames(ws: Any) -> None:
        for event in ("sent", "received"):
            ws.on(
                f"frame{event}",
                lambda raw, event=event: ada_frames.append((event, ws.url, json.loads(raw))),
            )

    pages["ada"].on("websocket", watch_frames)
    for key, page in pages.items():
        page.on("websocket", lambda ws, key=key: socket_urls[key].append(ws.url))
        page.on(
            "console",
            lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None,
        )
    await pages["teacher"].goto(f"{a.base}/classroom/{live['id']}")
    await pages["ada"].goto(f"{b.base}/classroom/{live['id']}")
    for page in pages.values():
        await kit.join_class(page)

    for key, page in pages.items():
        await eventually(lambda p=page: kit.decoding(p, 1), 30, f"{key} decoding the other's video")
    # Ada's page came from B: her signalling socket and her live channel stay there (B
    # relays both to A, where the class is)
    ada_path = [url.split("/api/v1/")[0] for url in socket_urls["ada"]]
    b_ws, a_ws = b.base.replace("http", "ws"), a.base.replace("http", "ws")
    assert ada_path == [b_ws, b_ws], socket_urls
    assert [u for u in socket_urls["ada"] if "/sfu/ws" in u] == [f"{b_ws}/api/v1/sfu/ws"]
    assert len(b.app[RELAY].doors) == 2 and len(a.app[RELAY].hosted) == 2
    assert all(url.startswith(a_ws) for url in socket_urls["teacher"]), socket_urls
    assert not blocked, blocked
    assert b.app[SFU_KEY].get_room(room) is None
    sfu_room = a.app[SFU_KEY].get_room(room)
    assert sfu_room is not None and len(sfu_room.peers) == 2
    assert not b.app[LIVE_ROOMS].rooms
    (live_room,) = a.app[LIVE_ROOMS].rooms.values()
    assert {str(u) for u in live_room.participants} == {teacher.id, ada.id}

    # the live channel: both participants, on both sides, and nothing alarming shown
    for key, page in pages.items():
        await page.get_by_role("tab", name="People").click()
        await eventually(lambda p=page: _two_people(p), 10, f"two people in {key}'s list")
    for key, page in pages.items():
        text = await page.locator("[data-people]").inner_text()
        assert "Ms Rivera" in text and "Ada Okafor" in text, (key, text)
        stats = await kit.classroom_stats(page)
        assert stats["conn"] == "Connected", (key, stats)
        assert stats["live"] == "connected", (key, stats)
        assert await page.locator(".toast-warn").count() == 0, (key, await page.content())

    # chat: each message is posted through its author's page's node (A, B), and the
    # class's live channel is on A: B relays Ada's to A
    for page in pages.values():
        await page.get_by_role("tab", name="Chat").click()
    await pages["teacher"].get_by_role("textbox", name="Message").fill("Welcome, Ada")
    await pages["teacher"].keyboard.press("Enter")
    await pages["ada"].get_by_role("textbox", name="Message").fill("Hello from node B")
    await pages["ada"].keyboard.press("Enter")
    for key, page in pages.items():
        await eventually(
            lambda p=page: _chat_shows(p, "Welcome, Ada", "Hello from node B"),
            10,
            f"both messages in {key}'s chat",
        )

    # renewal: the page's next access token goes to both of Ada's sockets (B relays the
    # signalling one's to A), and each is acknowledged (the page checks every 10 s)
    fresh = await b.call(
        "POST", "/api/v1/auth/login", json={"email": ada.email, "password": kit.PASSWORD}
    )
    new_token = fresh["access_token"]
    assert new_token != ada.tokens["access_token"]
    await pages["ada"].evaluate(
        """t => { const s = JSON.parse(localStorage.getItem("vtp.session"));
                  s.access_token = t; localStorage.setItem("vtp.session", JSON.stringify(s)); }""",
        new_token,
    )

    def renewed() -> set[str]:
        return {
            url.split("?")[0]
            for event, url, msg in ada_frames
            if event == "sent" and msg.get("type") == "auth" and msg.get("token") == new_token
        }

    async def both_renewed() -> bool:
        return len(renewed()) == 2

    await eventually(both_renewed, 25, "the new token sent to Ada's two sockets")

    async def acknowledged() -> bool:
        # after the renewal, each socket (both relayed to A) answered "authenticated"
        seen: set[str] = set()
        after: set[str] = set()
        for event, url, msg in ada_frames:
            if event == "sent" and msg.get("token") == new_token:
                seen.add(url)
            elif event == "received" and url in seen and msg.get("type") == "authenticated":
                after.add(url)
        return len(after) == 2

    await eventually(acknowledged, 10, "the renewed token acknowledged on both sockets")
    stats = await kit.classroom_stats(pages["ada"])
    assert stats["conn"] == "Connected" and stats["sfu"]["reconnects"] == 0, stats
    for page in pages.values():
        await page.context.close()


async def test_nodes_that_keep_sending_the_page_elsewhere_get_a_clear_error(
    nodes: tuple[kit.Server, kit.Server], browser: Any
) -> None:
    """Two nodes that disagree about a room would send the client back and forth for
    ever: the page follows two redirects in a row, then says it cannot reach the class.
    (The signalling socket is answered by Playwright, each time with room_elsewhere.)"""
    a, b = nodes
    teacher = await a.user("Mr Osei", role="teacher")
    ben = await b.user("Ben Tanaka")
    live = await a.live_session(teacher, [ben])
    page = await kit.signed_in_page(browser, b, ben)
    opened: list[str] = []

    def answer(ws: Any) -> None:
        opened.append(ws.url)
        node = a if len(opened) % 2 else b  # back and forth

        def on_message(raw: str | bytes) -> None:
            msg = json.loads(raw)
            rid = msg.get("request_id")
            if msg["type"] == "auth":
                ws.send(json.dumps({"type": "authenticated", "request_id": rid}))
            elif msg["type"] == "join":
                url = f"{node.base}/api/v1/sfu/ws?hop={len(opened)}"
                details = {"node_id": "elsewhere", "node_url": node.base, "url": url}
                error = {"code": "room_elsewhere", "message": "elsewhere", "details": details}
                ws.send(json.dumps({"type": "error", "request_id": rid, "error": error}))

        ws.on_message(on_message)

    await page.route_web_socket(lambda url: "/api/v1/sfu/ws" in url, answer)
    await page.goto(f"{b.base}/classroom/{live['id']}")
    await kit.join_class(page)
    title = page.locator("[data-overlay-title]")
    await title.wait_for()
    assert await title.inner_text() == "This class cannot be reached"
    assert (
        "kept sending this page elsewhere" in await page.locator("[data-overlay-text]").inner_text()
    )
    # the page's node, then two redirects (ws: URLs made from the http: ones), no more
    assert len(opened) == 3, opened
    assert opened[0] == f"{b.base.replace('http', 'ws')}/api/v1/sfu/ws"
    assert opened[1] == f"{a.base.replace('http', 'ws')}/api/v1/sfu/ws?hop=1"
    assert opened[2] == f"{b.base.replace('http', 'ws')}/api/v1/sfu/ws?hop=2"
    await page.context.close()


async def test_when_the_class_node_goes_away_the_page_finds_the_class_again(
    nodes: tuple[kit.Server, kit.Server], browser: Any
) -> None:
    """Node A (the class's) stops: the student's sockets, relayed there by B, are closed;
    the page connects again to B (its page's node), which places the room again - on
    itself, the only node left - and the page is in the class again there (SFU and live
    channel) within 10 s. (Last in the module: node A stays stopped.)"""
    a, b = nodes
    teacher = await a.user("Ms Lund", role="teacher")
    cleo = await b.user("Cleo Park")
    live = await a.live_session(teacher, [cleo])
    room = live["room_name"]
    pages = {
        "teacher": await kit.signed_in_page(browser, a, teacher),
        "cleo": await kit.signed_in_page(browser, b, cleo),
    }
    await pages["teacher"].goto(f"{a.base}/classroom/{live['id']}")
    await pages["cleo"].goto(f"{b.base}/classroom/{live['id']}")
    for page in pages.values():
        await kit.join_class(page)
    await eventually(lambda: kit.decoding(pages["cleo"], 1), 30, "Cleo decoding the teacher on A")
    assert b.app[SFU_KEY].get_room(room) is None

    await pages["teacher"].close()
    await a.stop()  # leaves the registry at once (a clean stop)

    async def back_on_b() -> Any:
        stats = await kit.classroom_stats(pages["cleo"])
        here = b.app[SFU_KEY].get_room(room)
        return stats if stats["conn"] == "Connected" and here is not None else None

    await eventually(back_on_b, 10, "Cleo's page connected again, to the room now on B")
    assert await b.app[PLACEMENT].owner(room) == "node-b"
    live_room = b.app[LIVE_ROOMS].rooms[uuid.UUID(live["id"])]
    assert {str(u) for u in live_room.participants} == {cleo.id}
