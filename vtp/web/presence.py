"""Who is in a live session by any way in, written to attendance (``session_participants``).

A user is present in a session's room while they have a classroom channel open
(:mod:`vtp.web.live`) or an SFU peer in its room (WebSocket signalling, REST transports,
WHIP, WHEP: :class:`vtp.signalling.members.Members` tells us). Their stay is one attendance
row, opened when their first way in opens and closed when their last one closes, so a
student who watches over WHEP only is in the attendance too, and one who has both a
channel and a peer counts once.

Counting happens synchronously as ways in open and close; the row writes run in order
per user and room (a lock per stay), so a quick join-leave-join never closes the wrong
row. Rooms that are no course session's (open rooms) write nothing. ``participant.joined``
and ``participant.left`` are written to the event outbox in the row's transaction.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from vtp.appkeys import DB, REDIS
from vtp.auth import removals
from vtp.db import attendance as attendance_db
from vtp.db.attendance import ParticipantRole
from vtp.events.stream import committed, record
from vtp.web.class_events import class_events

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Stay:
    count: int = 0
    row: tuple[uuid.UUID, uuid.UUID] | None = None  # (attendance row, session)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Presence:
    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._stays: dict[tuple[str, uuid.UUID], _Stay] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def arrive(
        self, room: str, user_id: uuid.UUID, role: ParticipantRole
    ) -> asyncio.Task[None] | None:
        """One more way in for this user; the first opens their attendance row (the
        returned task writes it)."""
        if self._closed:
            return None
        stay = self._stays.setdefault((room, user_id), _Stay())
        stay.count += 1
        if stay.count == 1:
            return self._spawn(self._open(stay, room, user_id, role))
        return None

    def depart(self, room: str, user_id: uuid.UUID) -> asyncio.Task[None] | None:
        """One way in fewer; the last closes their row."""
        stay = self._stays.get((room, user_id))
        if self._closed or stay is None or stay.count == 0:
            return None
        stay.count -= 1
        if stay.count == 0:
            del self._stays[(room, user_id)]
            return self._spawn(self._close(stay, room, user_id))
        return None

    def present(self, room: str, user_id: uuid.UUID) -> bool:
        return (room, user_id) in self._stays

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _open(
        self, stay: _Stay, room: str, user_id: uuid.UUID, role: ParticipantRole
    ) -> None:
        async with stay.lock:
            hub = class_events(self._app)
            try:
                ref = await hub.session_of_room(room) if hub is not None else None
                # the row and its event commit together (the event outbox)
                async with self._app[DB].acquire() as conn, conn.transaction():
                    stay.row = await attendance_db.record_join_in_room(conn, room, user_id, role)
                    if stay.row is not None and ref is not None:
                        await record(
                            self._app,
                            conn,
                            "participant.joined",
                            course_id=ref.course_id,
                            session_id=stay.row[1],
                            user_id=user_id,
                            role=role,
                        )
            except Exception:
                stay.row = None
                logger.exception("attendance join not recorded")
                return
            committed(self._app)

    async def _close(self, stay: _Stay, room: str, user_id: uuid.UUID) -> None:
        async with stay.lock:  # (after the row was opened)
            if stay.row is None:
                return
            row_id, session_id = stay.row
            hub = class_events(self._app)
            try:
                removed = await removals.reason(self._app[REDIS], session_id, user_id) is not None
                ref = await hub.session(session_id) if hub is not None else None
                # the row and its event commit together (the event outbox)
                async with self._app[DB].acquire() as conn, conn.transaction():
                    closed = await attendance_db.record_leave(conn, session_id, user_id, row_id)
                    # (no event when the session's end closed the row: it wrote its own)
                    if closed and hub is not None and ref is not None:
                        await record(
                            self._app,
                            conn,
                            "participant.left",
                            course_id=ref.course_id,
                            session_id=session_id,
                            user_id=user_id,
                            reason=hub.left_reason(room, user_id, removed),
                        )
            except Exception:
                logger.exception("attendance leave not recorded")
                return
            committed(self._app)

    async def close(self) -> None:
        """Shutdown: the process disconnects everyone, so every open stay ends now (later
        arrivals and departures are not written: the database is going away)."""
        self._closed = True
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        stays, self._stays = list(self._stays.items()), {}
        for (room, user_id), stay in stays:
            await self._close(stay, room, user_id)


PRESENCE = web.AppKey("web_presence", Presence)


def _watch_sfu_members(app: web.Application, presence: Presence) -> Callable[[], None] | None:
    """Every SFU member counts as a way in (None when the SFU is not set up)."""
    from vtp.signalling.members import MEMBERS, Member

    members = app.get(MEMBERS)
    if members is None:
        return None

    def changed(member: Member, present: bool) -> None:
        if present:
            presence.arrive(member.room, member.user_id, member.role)
        else:
            presence.depart(member.room, member.user_id)

    return members.add_watcher(changed)


async def presence_ctx(app: web.Application) -> AsyncIterator[None]:
    """``app.cleanup_ctx`` entry; after the SFU members' context (it watches them)."""
    presence = Presence(app)
    app[PRESENCE] = presence
    remove = _watch_sfu_members(app, presence)
    try:
        yield
    finally:
        if remove is not None:
            remove()
        await presence.close()
