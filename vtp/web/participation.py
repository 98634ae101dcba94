"""Participation per participant and session: talk time and turns (from the SFU's
RFC 6464 audio levels: :class:`vtp.sfu.talk.TalkMeter`), hands raised, and, counted when
read, chat messages and time present (``session_participation``, :mod:`vtp.db.participation`).

Counters gather in plain numbers in memory and are written every
``participation_flush_s`` (and when someone's peer leaves the room, their talk is taken
over before the peer is forgotten).

When a session ends, its summary must hold every node's figures (the room's talk time
is counted on the node that hosts it, hands on whichever node holds the student's
socket): the node that ended it raises a flush request (a counter in Redis), every
node's flush loop sees it within ``FLUSH_CHECK_S``, writes what it gathered and marks the
request answered; the ``session.summary`` event is built from the database once every
live node (the cluster registry) has answered, or after
``participation_summary_wait_s`` (``complete`` says which), and written to the event
outbox with its row in ``session_summaries`` (once per session). If the ending node dies
first, any node's flush loop finds the ended session without a summary and writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from vtp.appkeys import CONFIG, DB, NODES, REDIS
from vtp.db import attendance as attendance_db
from vtp.db import participation as db
from vtp.db import sessions as sessions_db
from vtp.db.models import LiveSession
from vtp.events.stream import committed, record
from vtp.web.class_events import class_events

logger = logging.getLogger(__name__)

FLUSH_CHECK_S = 0.25  # how often a node looks for a flush request
ANSWER_TTL_S = 3600


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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
        self._answered = 0  # the last flush request this process answered
        self._stopping = False
        self._summarising: set[uuid.UUID] = set()  # sessions whose summary is under way
        self._own_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        base = f"{app[CONFIG].events_stream}:participation"
        self._request_key = f"{base}:flush-request"
        self._answer_prefix = f"{base}:flushed:"

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

    # --- flushes across nodes -------------------------------------------------------------

    def node_id(self) -> str:
        nodes = self._app.get(NODES)
        return nodes.id if nodes is not None else self._own_id

    async def request_flush(self) -> int:
        """Ask every node to write its counters now; the request's number."""
        return int(await self._app[REDIS].incr(self._request_key))

    async def flush_and_answer(self) -> None:
        """Write everything gathered so far, and answer the flush requests made before."""
        redis = self._app[REDIS]
        requested = int(await redis.get(self._request_key) or 0)
        self.collect()
        await self.flush()
        if requested:
            await redis.set(self._answer_prefix + self.node_id(), requested, ex=ANSWER_TTL_S)
        self._answered = requested

    async def all_answered(self, request: int, timeout_s: float) -> bool:
        """Until every live node answered the request (False: not all within the time)."""
        redis = self._app[REDIS]
        deadline = time.monotonic() + timeout_s
        while True:
            nodes = self._app.get(NODES)
            expected = {n.id for n in await nodes.nodes()} if nodes is not None else set()
            expected.add(self.node_id())
            ordered = sorted(expected)
            answers = await redis.mget([self._answer_prefix + i for i in ordered])
            if all(a is not None and int(_text(a)) >= request for a in answers):
                return True
            if time.monotonic() >= deadline:
                late = [i for i, a in zip(ordered, answers, strict=True) if a is None]
                logger.warning("session summary without the counters of %s", late or ordered)
                return False
            await asyncio.sleep(FLUSH_CHECK_S / 2)

    async def summarise_late(self) -> None:
        """Summaries of sessions whose ender died before writing one (any node may)."""
        config = self._app[CONFIG]
        late_s = 2 * config.participation_summary_wait_s + config.participation_flush_s
        for session_id in await db.unsummarised(self._app[DB], late_s):
            if session_id in self._summarising:
                continue
            session = await sessions_db.get_session(self._app[DB], session_id)
            if session is not None:
                self._summarising.add(session_id)
                self.spawn(_summary(self._app, self, session))

    async def stop(self, task: asyncio.Task[None]) -> None:
        """End :meth:`run`. redis-py may swallow a cancellation that lands in a command
        (the loop reads Redis 4 times a second): cancel until it is done."""
        self._stopping = True
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)

    async def run(self, every_s: float) -> None:
        """Write every ``every_s``, and at once when a node asks (a session ended)."""
        written_at = time.monotonic()
        while not self._stopping:
            await asyncio.sleep(FLUSH_CHECK_S)
            try:
                if time.monotonic() - written_at < every_s:
                    requested = int(await self._app[REDIS].get(self._request_key) or 0)
                    if requested <= self._answered:
                        continue
                written_at = time.monotonic()
                await self.flush_and_answer()
                await self.summarise_late()
            except Exception:
                written_at = time.monotonic()  # (try again in every_s: not a log flood)
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
    counter._summarising.add(session.id)
    try:
        await _write_summary(app, counter, session)
    finally:
        counter._summarising.discard(session.id)


async def _write_summary(
    app: web.Application, counter: Participation, session: LiveSession
) -> None:
    complete = False
    try:
        request = await counter.request_flush()
        await counter.flush_and_answer()
        complete = await counter.all_answered(request, app[CONFIG].participation_summary_wait_s)
    except Exception:
        logger.exception("participation of session %s not gathered from every node", session.id)
        with contextlib.suppress(Exception):
            counter.collect()
            await counter.flush(session.room_name)
    lines = await attendance_db.attendance(app[DB], session.id)
    async with app[DB].acquire() as conn, conn.transaction():
        if not await db.claim_summary(conn, session.id):
            return  # (another node wrote it: a late one raced the ender's)
        await record(
            app,
            conn,
            "session.summary",
            course_id=session.course_id,
            session_id=session.id,
            started_at=session.started_at,
            ended_at=session.ended_at,
            complete=complete,
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
    committed(app)


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
        await counter.stop(task)
        await counter.wait()
        if remove is not None:
            remove()
        try:
            counter.collect()
            await counter.flush()
        except Exception:
            logger.exception("participation counters lost at shutdown")
