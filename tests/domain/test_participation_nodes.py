"""The session summary across nodes (issue 17): talk time and hands gathered on another
node than the one that ends the session are in ``session.summary``; a node that does not
answer delays it only by ``participation_summary_wait_s``."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from domain_helpers import World

from vtp.appkeys import CONFIG, DB, REDIS
from vtp.config import Config
from vtp.events.stream import EVENTS
from vtp.web.participation import PARTICIPATION

WAIT_S = 2.0


@pytest.fixture
def config(config: Config) -> Config:
    return config.model_copy(update={"participation_summary_wait_s": WAIT_S})


async def live_session(world: World) -> tuple[str, str]:
    sid = await world.start_session("Two nodes")
    app = world.client.server.app
    room = await app[DB].fetchval("SELECT room_name FROM live_sessions WHERE id = $1", sid)
    return sid, str(room)


async def summary_of(world: World, sid: str) -> dict[str, Any]:
    app = world.client.server.app
    await app[PARTICIPATION].wait()
    await app[EVENTS].flush()
    entries = await app[REDIS].xrange(app[CONFIG].events_stream)
    events = [json.loads(fields[b"event"]) for _, fields in entries]
    types = [e["type"] for e in events if e["session_id"] == sid]
    # (the hand, a live event of the other node, may land before or after the end)
    assert types.index("session.ended") < types.index("session.summary") == len(types) - 1
    data: dict[str, Any] = next(
        e["data"] for e in events if e["session_id"] == sid and e["type"] == "session.summary"
    )
    return data


async def test_the_summary_holds_the_counters_of_another_node(
    world: World, aiohttp_client: Any, config: Config
) -> None:
    """Node B hosts the room (talk) and a student's socket (a hand); it writes its
    counters only every 300 s. The session is ended on node A: the summary still has
    B's figures, at once."""
    from vtp.app import create_app

    other = await aiohttp_client(
        create_app(config.model_copy(update={"participation_flush_s": 300.0}))
    )
    sid, room = await live_session(world)
    student = uuid.UUID(world.student.user_id)
    counter_b = other.server.app[PARTICIPATION]
    counter_b.add_talk(room, student, 3.25, 2)
    counter_b.hand_raised(room, student)
    started = time.monotonic()
    await world.ok(world.teacher, "POST", f"/api/v1/sessions/{sid}/end")
    summary = await summary_of(world, sid)
    took = time.monotonic() - started
    line = next(p for p in summary["participants"] if p["user_id"] == world.student.user_id)
    assert (line["talk_seconds"], line["turns"], line["hands_raised"]) == (3.2, 2, 1)
    assert summary["complete"] is True
    assert took < WAIT_S  # (every node answered: no waiting out the bound)
    await other.close()


async def test_a_node_that_does_not_answer_delays_the_summary_boundedly(
    world: World, aiohttp_client: Any, config: Config
) -> None:
    from vtp.app import create_app

    other = await aiohttp_client(create_app(config))
    stuck = asyncio.Event()

    async def hang() -> None:
        await stuck.wait()

    other.server.app[PARTICIPATION].flush_and_answer = hang  # type: ignore[method-assign]
    sid, _ = await live_session(world)
    started = time.monotonic()
    await world.ok(world.teacher, "POST", f"/api/v1/sessions/{sid}/end")
    summary = await summary_of(world, sid)
    took = time.monotonic() - started
    stuck.set()
    await other.close()
    assert summary["complete"] is False
    assert WAIT_S <= took < WAIT_S + 5


async def test_a_summary_the_ender_never_wrote_is_written_late_once(
    world: World, aiohttp_client: Any, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node that ended the session dies before its summary (here: it never starts
    one): a node's flush loop writes it later, once."""
    import vtp.web.participation as participation
    from vtp.app import create_app

    monkeypatch.setattr(participation, "summarise", lambda app, session: None)
    sid, _ = await live_session(world)
    await world.ok(world.teacher, "POST", f"/api/v1/sessions/{sid}/end")
    fast = config.model_copy(
        update={"participation_flush_s": 0.5, "participation_summary_wait_s": 0.5}
    )
    other = await aiohttp_client(create_app(fast))
    app = world.client.server.app
    deadline = time.monotonic() + 20
    while not await app[DB].fetchval("SELECT 1 FROM session_summaries WHERE session_id = $1", sid):
        assert time.monotonic() < deadline, "no late summary"
        await asyncio.sleep(0.1)
    await other.server.app[PARTICIPATION].wait()
    await other.server.app[EVENTS].flush()
    await other.close()
    summary = await summary_of(world, sid)
    entries = await app[REDIS].xrange(app[CONFIG].events_stream)
    types = [json.loads(f[b"event"]) for _, f in entries]
    assert [e["type"] for e in types if e["session_id"] == sid].count("session.summary") == 1
    assert summary["complete"] is True
