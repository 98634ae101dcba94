"""The authority bus on its own: delivery in this process and through Redis pub/sub to
another bus, with the embedded fakeredis (the default with no REDIS_URL) and a real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from fakeredis import FakeAsyncRedis, FakeServer
from redis.asyncio import Redis

from vtp.auth.authority import AuthorityBus, AuthorityChange, Recheck


@pytest.fixture(params=["fakeredis", "redis"])
async def clients(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[list[Redis]]:
    made: list[Redis]
    if request.param == "fakeredis":
        server = FakeServer()  # what two apps of one process would share
        made = [FakeAsyncRedis(server=server), FakeAsyncRedis(server=server)]
    else:
        made = [Redis.from_url(redis_url), Redis.from_url(redis_url)]
    yield made
    for client in made:
        await client.aclose()


async def _until(check: Callable[[], object], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not delivered within 2 s"
        await asyncio.sleep(0.01)


async def test_a_change_reaches_the_watches_it_concerns_here_and_in_another_bus(
    clients: list[Redis],
) -> None:
    here, there = AuthorityBus(clients[0]), AuthorityBus(clients[1])
    await here.start()
    await there.start()
    ada, ben = uuid.uuid4(), uuid.uuid4()
    session = uuid.uuid4()
    seen: dict[str, list[AuthorityChange]] = {"here": [], "there": [], "ben": [], "class": []}

    def record(key: str) -> Recheck:
        async def recheck(change: AuthorityChange) -> None:
            seen[key].append(change)

        return recheck

    here.watch(ada, record("here"))
    there.watch(ada, record("there"))
    there.watch(ben, record("ben"))
    in_class = there.watch(ben, record("class"), lambda: (None, session))
    try:
        change = AuthorityChange("unenrolled", user_id=ada, course_id=uuid.uuid4(), by="T")
        await here.publish(change)
        await _until(lambda: seen["here"] and seen["there"])
        assert seen["here"] == [change] and seen["there"] == [change]  # once each
        assert seen["ben"] == [] and seen["class"] == []
        # A change for everyone in a session reaches the watches in that session only.
        ended = AuthorityChange("session ended", session_id=session)
        await here.publish(ended)
        await _until(lambda: seen["class"])
        assert seen["class"] == [ended] and seen["ben"] == [] and len(seen["there"]) == 1
        # A cancelled watch hears nothing more; garbage on the channel is ignored.
        in_class.cancel()
        await clients[0].publish(there.channel, b"{not json")
        await here.publish(AuthorityChange("session ended", session_id=session))
        await here.publish(AuthorityChange("signed out", user_id=ben))
        await _until(lambda: seen["ben"])
        assert len(seen["class"]) == 1
    finally:
        await here.close()
        await there.close()
    assert here.watching == 0 and there.watching == 0
