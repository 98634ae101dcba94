"""Participation per participant and session: talk time and turns (from the SFU's
RFC 6464 audio levels: :class:`vtp.sfu.talk.TalkMeter`), hands raised, and, counted when
read, chat messages and time present (``session_participation``, :mod:`vtp.db.participation`).

Counters gather in plain numbers in memory and are written every
``participation_flush_s`` (and when someone's peer leaves the room, their talk is taken
over before the peer is forgotten). When a session ends, what is left is written and
the ``session.summary`` event goes out with one line per participant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from vtp.appkeys import CONFIG, DB
from vtp.db import attendance as attendance_db
from vtp.db import participation as db
from vtp.db.models import LiveSession
from vtp.events.stream import emit, record
from vtp.web.class_events import class_events

logger = logging.getLogger(__name__)


class _Counts:
    __slots__ = ("hands", "talk_s", "turns")

    def __init__(self) -> None:
        self.talk_s = 0.0
        self.turns = 0
        self.hands = 0


class Participation:
    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._pending: dict[tuple[str, uuid.UUID], _Counts] = {}  # (room, user)
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("participation task failed", exc_info=task.exception())

    async def wait(self) -> None:
        """Until the background work started so far is done (summaries; shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _counts(self, room: str, user_id: uuid.UUID) -> _Counts:
        counts = self._pending.get((room, user_id))
        if counts is None:
            counts = self._pending[(room, user_id)] = _Counts()
        return counts

    # --- hooks ------------------------------------------------------------------------------

    def hand_raised(self, room: str, user_id: uuid.UUID) -> None:
        self._counts(room, user_id).hands += 1
        hub = class_events(self._app)
        if hub is not None:
            hub.in_room(room, "participant.hand_raised", user_id=user_id)

    def add_talk(self, room: str, user_id: uuid.UUID, seconds: float, turns: int) -> None:
        if seconds or turns:
            counts = self._counts(room, user_id)
            counts.talk_s += seconds
            counts.turns += turns

    def collect(self) -> None:
        """Take every room's talk since the last time (from the SFU's meters)."""
        from vtp.appkeys import SFU_KEY
        from vtp.signalling.members import MEMBERS

        sfu = self._app.get(SFU_KEY)
        members = self._app.get(MEMBERS)
        if sfu is None or members is None:
            return
        for room in list(sfu.rooms.values()):
            for peer_id, (seconds, turns) in room.talk.take().items():
                member = members.get(room.name, peer_id)
                if member is not None:
                    self.add_talk(room.name, member.user_id, seconds, turns)

    async def flush(self, room: str | None = None) -> None:
        """Write what gathered (only that room's when given)."""
        async with self._lock:
            keys = [k for k in self._pending if room is None or k[0] == room]
            taken = [(k, self._pending.pop(k)) for k in keys]
            increments: list[db.Increment] = []
            hub = class_events(self._app)
            for (room_name, user_id), counts in taken:
                ref = await hub.session_of_room(room_name) if hub is not None else None
                if ref is None:
                    continue  # an open room: no class to count for
                increments.append(
                    db.Increment(
                        ref.session_id,
                        user_id,
                        talk_ms=round(counts.talk_s * 1000),
                        turns=counts.turns,
                        hands_raised=counts.hands,
                    )
                )
            try:
                await db.add(self._app[DB], increments)
            except Exception:
                # keep them for the next flush
                for key, counts in taken:
                    again = self._counts(*key)
                    again.talk_s += counts.talk_s
                    again.turns += counts.turns
                    again.hands += counts.hands
                raise

    async def run(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                self.collect()
                await self.flush()
            except Exception:
                logger.exception("participation counters not written (kept for the next try)")


PARTICIPATION = web.AppKey("participation", Participation)


def hand_raised(
    app: web.Application, room: str, user_id: uuid.UUID, raised_at: datetime | None, raise_: object
) -> None:
    """The live channel's ``hand`` message: count (and announce) a hand going up."""
    counter = app.get(PARTICIPATION)
    if counter is not None and raised_at is None and raise_:
        counter.hand_raised(room, user_id)


async def session_ended(
    app: web.Application,
    conn: asyncpg.Connection,
    session: LiveSession,
    still_in: list[uuid.UUID],
) -> None:
    """In the transaction that ends the session: who was still in left (reason
    ``session_ended``), then the session ended."""
    from vtp.events.hooks import session_changed

    for user_id in still_in:
        await record(
            app,
            conn,
            "participant.left",
            course_id=session.course_id,
            session_id=session.id,
            user_id=user_id,
            reason="session_ended",
        )
    await session_changed(app, conn, "session.ended", session)


def summarise(app: web.Application, session: LiveSession) -> None:
    """After the end committed: the summary as soon as the last counters are written
    (in the background: the end request does not wait)."""
    counter = app.get(PARTICIPATION)
    if counter is not None:
        counter.spawn(_summary(app, counter, session))


async def _summary(app: web.Application, counter: Participation, session: LiveSession) -> None:
    try:
        counter.collect()
        await counter.flush(session.room_name)
    except Exception:
        logger.exception("participation of session %s not written", session.id)
    lines = await attendance_db.attendance(app[DB], session.id)
    emit(
        app,
        "session.summary",
        course_id=session.course_id,
        session_id=session.id,
        started_at=session.started_at,
        ended_at=session.ended_at,
        participants=[
            {
                "user_id": line.user_id,
                "display_name": line.display_name,
                "email": line.email,
                "course_role": line.course_role,
                "joins": line.joins,
                "minutes_present": round(line.attended_seconds / 60, 1),
                "talk_seconds": round(line.participation.talk_ms / 1000, 1),
                "turns": line.participation.turns,
                "hands_raised": line.participation.hands_raised,
                "chat_messages": line.participation.chat_messages,
            }
            for line in lines
        ],
    )


def _watch_members(app: web.Application, counter: Participation) -> Callable[[], None] | None:
    """A departing peer's talk is taken before the room forgets it."""
    from vtp.appkeys import SFU_KEY
    from vtp.signalling.members import MEMBERS, Member

    sfu = app.get(SFU_KEY)
    members = app.get(MEMBERS)
    if sfu is None or members is None:
        return None

    def changed(member: Member, present: bool) -> None:
        if present:
            return
        room = sfu.get_room(member.room)
        if room is not None:
            counter.add_talk(member.room, member.user_id, *room.talk.pop(member.peer_id))

    return members.add_watcher(changed)


async def participation_ctx(app: web.Application) -> AsyncIterator[None]:
    """``app.cleanup_ctx`` entry, after the SFU members and the class events."""
    counter = Participation(app)
    app[PARTICIPATION] = counter
    remove = _watch_members(app, counter)
    task = asyncio.create_task(counter.run(app[CONFIG].participation_flush_s))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await counter.wait()
        if remove is not None:
            remove()
        try:
            counter.collect()
            await counter.flush()
        except Exception:
            logger.exception("participation counters lost at shutdown")
