"""Class events that happen in a live room (hands, mutes, publications) put on the event
stream (:mod:`vtp.events`) with their session and course, and why someone left (the joins
and departures themselves commit with their attendance rows: :mod:`vtp.web.presence`).

Hooks in the classroom code know a room name or a session id; this module finds the
session and course (cached: a room belongs to one session for good) and emits in the
order the hooks were called (one worker). Publications come from the SFU's own event
bus, mapped to people with :class:`vtp.signalling.members.Members`: the media plane imports
nothing from here.

Why someone left: ``removed`` when the teacher removed them, ``vanished`` when their
last way in was a media peer that stopped answering (``timeout``) or whose signalling
socket dropped without a goodbye (``disconnected``), ``left`` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from vtp.appkeys import DB
from vtp.events.envelope import EventType
from vtp.events.stream import emit

logger = logging.getLogger(__name__)

VANISHED = frozenset({"timeout", "disconnected"})
CACHE_LIMIT = 10_000
QUEUE_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class SessionRef:
    session_id: uuid.UUID
    course_id: uuid.UUID


class ClassEvents:
    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._rooms: dict[str, SessionRef | None] = {}
        self._sessions: dict[uuid.UUID, SessionRef] = {}
        self._hints: dict[tuple[str, uuid.UUID], str] = {}  # (room, user) -> last peer reason
        self._peers: dict[tuple[str, str], uuid.UUID] = {}  # (room, peer id) -> user
        self._queue: asyncio.Queue[tuple[str | uuid.UUID, EventType, dict[str, Any]]] = (
            asyncio.Queue(QUEUE_LIMIT)
        )
        self._worker: asyncio.Task[None] | None = None

    # --- hooks ------------------------------------------------------------------------------

    def in_room(self, room: str, type: EventType, **data: Any) -> None:
        self._put(room, type, data)

    def in_session(self, session_id: uuid.UUID, type: EventType, **data: Any) -> None:
        self._put(session_id, type, data)

    def left_reason(self, room: str, user_id: uuid.UUID, removed: bool) -> str:
        hint = self._hints.pop((room, user_id), None)
        if removed:
            return "removed"
        return "vanished" if hint in VANISHED else "left"

    # --- session lookup -------------------------------------------------------------------

    async def session_of_room(self, room: str) -> SessionRef | None:
        if room in self._rooms:
            return self._rooms[room]
        row = await self._app[DB].fetchrow(
            "SELECT id, course_id FROM live_sessions WHERE room_name = $1", room
        )
        ref = SessionRef(row["id"], row["course_id"]) if row is not None else None
        self._remember(room, ref)
        return ref

    async def session(self, session_id: uuid.UUID) -> SessionRef | None:
        ref = self._sessions.get(session_id)
        if ref is not None:
            return ref
        course_id = await self._app[DB].fetchval(
            "SELECT course_id FROM live_sessions WHERE id = $1", session_id
        )
        if course_id is None:
            return None
        ref = SessionRef(session_id, course_id)
        self._sessions[session_id] = ref
        return ref

    def _remember(self, room: str, ref: SessionRef | None) -> None:
        if len(self._rooms) >= CACHE_LIMIT:
            self._rooms.clear()
            self._sessions.clear()
        self._rooms[room] = ref
        if ref is not None:
            self._sessions[ref.session_id] = ref

    # --- the worker -----------------------------------------------------------------------

    def _put(self, where: str | uuid.UUID, type: EventType, data: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait((where, type, data))
        except asyncio.QueueFull:
            logger.error("class events queue full: %s dropped", type)

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="vtp-class-events")

    async def _run(self) -> None:
        while True:
            where, type, data = await self._queue.get()
            try:
                if isinstance(where, str):
                    ref = await self.session_of_room(where)
                else:
                    ref = await self.session(where)
                if ref is not None:  # (open rooms are no class)
                    emit(
                        self._app,
                        type,
                        course_id=ref.course_id,
                        session_id=ref.session_id,
                        **data,
                    )
            except Exception:
                logger.exception("class event %s not emitted", type)
            finally:
                self._queue.task_done()

    async def close(self, timeout_s: float = 5.0) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout_s)
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    # --- the SFU's events -----------------------------------------------------------------

    def _still_present(self, room: str, user_id: uuid.UUID) -> bool:
        from vtp.web.presence import PRESENCE

        presence = self._app.get(PRESENCE)
        return presence is not None and presence.present(room, user_id)

    def on_member(self, room: str, peer_id: str, user_id: uuid.UUID, present: bool) -> None:
        if present:
            self._peers[(room, peer_id)] = user_id

    def on_sfu_event(self, event: Any) -> None:
        from vtp.sfu import events

        if isinstance(event, events.StreamAdded | events.StreamRemoved):
            user_id = self._peers.get((event.room, event.peer_id))
            if user_id is None:
                return
            if isinstance(event, events.StreamAdded):
                self.in_room(
                    event.room,
                    "publication.started",
                    user_id=user_id,
                    stream_id=event.stream_id,
                    label=event.label,
                    kinds=list(event.kinds),
                )
            else:
                self.in_room(
                    event.room, "publication.stopped", user_id=user_id, stream_id=event.stream_id
                )
        elif isinstance(event, events.PeerLeft):
            user_id = self._peers.pop((event.room, event.peer_id), None)
            if user_id is not None and not self._still_present(event.room, user_id):
                # (this peer was their last way in: why it went is why they left)
                self._hints[(event.room, user_id)] = event.reason
        elif isinstance(event, events.RoomClosed):
            for peer_key in [k for k in self._peers if k[0] == event.room]:
                del self._peers[peer_key]
            for hint_key in [k for k in self._hints if k[0] == event.room]:
                del self._hints[hint_key]


CLASS_EVENTS = web.AppKey("class_events", ClassEvents)


def class_events(app: web.Application) -> ClassEvents | None:
    return app.get(CLASS_EVENTS)


def announce(app: web.Application, room: str, type: EventType, **data: Any) -> None:
    """The one-line hook for classroom code that knows the room's name."""
    hub = app.get(CLASS_EVENTS)
    if hub is not None:
        hub.in_room(room, type, **data)


def _watch_sfu(app: web.Application, events_: ClassEvents) -> list[Callable[[], None]]:
    from vtp.appkeys import SFU_KEY
    from vtp.signalling.members import MEMBERS, Member

    removers: list[Callable[[], None]] = []
    sfu = app.get(SFU_KEY)
    members = app.get(MEMBERS)
    if sfu is None or members is None:
        return removers

    def changed(member: Member, present: bool) -> None:
        events_.on_member(member.room, member.peer_id, member.user_id, present)

    removers.append(members.add_watcher(changed))
    removers.append(sfu.add_listener(events_.on_sfu_event))
    return removers


async def class_events_ctx(app: web.Application) -> AsyncIterator[None]:
    """``app.cleanup_ctx`` entry: after the SFU members, before presence (whose last
    departures at shutdown it still emits)."""
    hub = ClassEvents(app)
    hub.start()
    app[CLASS_EVENTS] = hub
    removers = _watch_sfu(app, hub)
    try:
        yield
    finally:
        for remove in removers:
            remove()
        await hub.close()
