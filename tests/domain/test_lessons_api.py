"""Lessons: ordering, drafts, markdown content and attachments."""

from __future__ import annotations

from typing import Any

import asyncpg
from domain_helpers import World
from helpers import assert_error

PDF = b"%PDF-1.4\n%%EOF\n"


async def add(world: World, title: str, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = await world.ok(
        world.teacher,
        "POST",
        f"/api/v1/courses/{world.course_id}/lessons",
        {"title": title, "status": "published", **fields},
        201,
    )
    return result


async def titles(world: World, who: Any = None) -> list[str]:
    body = await world.ok(who or world.teacher, "GET", f"/api/v1/courses/{world.course_id}/lessons")
    return [lesson["title"] for lesson in body["items"]]


async def test_positions_stay_contiguous(world: World, db: asyncpg.Connection) -> None:
    a = await add(world, "A")
    await add(world, "C")
    await add(world, "B", position=1)
    await add(world, "Z", position=99)  # clamped to the end
    assert await titles(world) == ["A", "B", "C", "Z"]
    moved = await world.ok(world.ta, "PATCH", f"/api/v1/lessons/{a['id']}", {"position": 2})
    assert moved["position"] == 2
    assert await titles(world) == ["B", "C", "A", "Z"]
    await world.ok(world.teacher, "PATCH", f"/api/v1/lessons/{a['id']}", {"position": 0})
    assert await titles(world) == ["A", "B", "C", "Z"]
    await world.ok(world.teacher, "DELETE", f"/api/v1/lessons/{a['id']}", status=204)
    assert await titles(world) == ["B", "C", "Z"]
    positions = await db.fetch("SELECT position FROM lessons ORDER BY position")
    assert [r["position"] for r in positions] == [0, 1, 2]


async def test_paging_by_position(world: World) -> None:
    for name in "ABCDE":
        await add(world, name)
    seen: list[str] = []
    cursor = None
    while True:
        url = f"/api/v1/courses/{world.course_id}/lessons?limit=2"
        body = await world.ok(world.student, "GET", url + (f"&cursor={cursor}" if cursor else ""))
        seen += [lesson["title"] for lesson in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list("ABCDE")
    status, body = await world.call(
        world.student, "GET", f"/api/v1/courses/{world.course_id}/lessons?cursor=x"
    )
    assert status == 400
    assert assert_error(body, "validation_error")["details"][0]["field"] == "cursor"  # type: ignore[index]


async def test_drafts_and_publishing(world: World) -> None:
    draft = await add(world, "Draft", status="draft", content_md="# Soon")
    await add(world, "Live")
    assert draft["published_at"] is None
    assert await titles(world, world.student) == ["Live"]
    assert await titles(world, world.ta) == ["Draft", "Live"]
    url = f"/api/v1/courses/{world.course_id}/lessons"
    drafts = await world.ok(world.ta, "GET", url + "?status=draft")
    assert [lesson["title"] for lesson in drafts["items"]] == ["Draft"]
    assert (await world.ok(world.student, "GET", url + "?status=draft"))["items"] == []
    assert (await world.call(world.student, "GET", f"/api/v1/lessons/{draft['id']}"))[0] == 404
    assert (
        await world.call(world.student, "PATCH", f"/api/v1/lessons/{draft['id']}", {"title": "x"})
    )[0] == 404
    published = await world.ok(
        world.teacher, "PATCH", f"/api/v1/lessons/{draft['id']}", {"status": "published"}
    )
    assert published["published_at"] is not None
    got = await world.ok(world.observer, "GET", f"/api/v1/lessons/{draft['id']}")
    assert got["content_md"] == "# Soon"
    assert (await world.call(world.student, "PATCH", f"/api/v1/lessons/{draft['id']}", {}))[
        0
    ] == 403
    assert (await world.call(world.other, "GET", f"/api/v1/lessons/{draft['id']}"))[0] == 404
    status, body = await world.call(
        world.teacher, "POST", f"/api/v1/courses/{world.course_id}/lessons", {"title": ""}
    )
    assert status == 400
    assert_error(body, "validation_error")


async def test_attachments(world: World) -> None:
    lesson = await add(world, "With slides")
    url = f"/api/v1/lessons/{lesson['id']}/attachments"
    resp = await world.client.post(
        url, params={"filename": "slides.pdf"}, data=PDF, headers=world.teacher.headers
    )
    assert resp.status == 201, await resp.text()
    meta = await resp.json()
    resp = await world.client.post(
        url, params={"filename": "slides.pdf"}, data=PDF, headers=world.student.headers
    )
    assert resp.status == 403
    resp = await world.client.post(
        url, params={"filename": "virus.exe"}, data=b"MZ", headers=world.teacher.headers
    )
    assert resp.status == 415
    body = await world.ok(world.student, "GET", f"/api/v1/lessons/{lesson['id']}")
    assert [a["name"] for a in body["attachments"]] == ["slides.pdf"]
    assert "key" not in body["attachments"][0]
    resp = await world.client.get(f"{url}/{meta['id']}", headers=world.observer.headers)
    assert resp.status == 200 and await resp.read() == PDF
    assert (await world.call(world.other, "GET", f"{url}/{meta['id']}"))[0] == 404
    assert (await world.call(world.student, "DELETE", f"{url}/{meta['id']}"))[0] == 403
    await world.ok(world.ta, "DELETE", f"{url}/{meta['id']}", status=204)
    assert (await world.call(world.student, "GET", f"{url}/{meta['id']}"))[0] == 404


async def test_concurrent_inserts_and_moves_keep_positions_contiguous(
    world: World, db: asyncpg.Connection
) -> None:
    import asyncio

    url = f"/api/v1/courses/{world.course_id}/lessons"
    created = await asyncio.gather(
        *(
            world.call(world.teacher, "POST", url, {"title": f"L{i}", "position": 0})
            for i in range(6)
        )
    )
    assert [status for status, _ in created] == [201] * 6
    ids = [body["id"] for _, body in created]
    moves = await asyncio.gather(
        *(
            world.call(world.teacher, "PATCH", f"/api/v1/lessons/{lid}", {"position": i % 3})
            for i, lid in enumerate(ids)
        )
    )
    assert [status for status, _ in moves] == [200] * 6
    positions = await db.fetch(
        "SELECT position FROM lessons WHERE course_id = $1::uuid ORDER BY position",
        world.course_id,
    )
    assert [r["position"] for r in positions] == list(range(6))
