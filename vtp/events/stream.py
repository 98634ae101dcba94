"""Events into the Redis Stream through a transactional outbox (``event_outbox``).

A change and its event commit together: :meth:`EventStream.record` writes the event row
in the caller's transaction (:mod:`vtp.db.event_outbox`). Live room events, which are
no database change of their own (joins and departures, hands, publications, recording
progress), go through :meth:`EventStream.emit`: synchronous (room code must not wait or
fail because of the event stream), queued in memory and written to the outbox by one
writer task, in emission order, a batch per transaction. They are durable from that
insert on; what a process holds in that queue when it dies is lost (docs/events.md).

Each node runs a relay: it takes the cluster-wide relay lock (a PostgreSQL advisory lock,
no Redis needed), appends the oldest rows to the stream (``XADD MAXLEN ~``, pipelined)
and deletes them in the same transaction; one batch per transaction, then the lock is
free again. So rows reach the stream in seq order whichever node relays, and a relay
that fails or dies between XADD and the commit leaves its rows to be appended again,
with the same event ids (at-least-once; consumers deduplicate on ``id``). While Redis is
down rows wait in the outbox: nothing is lost. The relay runs when this process wrote
events, and every ``POLL_S`` (rows of another node, or left by a crashed one).

An API request that emitted events answers only once they are in the stream (or after
``WRITE_WAIT_S``): :func:`events_middleware`. So what a client does next, on any node,
comes after them in the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from vtp.db import event_outbox as db
from vtp.events.envelope import Event, EventType, new_event

logger = logging.getLogger(__name__)

QUEUE_LIMIT = 50_000
BATCH = 256
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0
WRITE_WAIT_S = 1.0
POLL_S = 1.0
LOCK_RETRY_S = 0.05


def _row(event: Event) -> db.NewRow:
    key = event.session_id or event.course_id
    return db.NewRow(str(key) if key else "", event.id, event.type, event.dumps())


class EventStream:
    def __init__(self, redis: Redis, pool: asyncpg.Pool, key: str, max_length: int) -> None:
        self.redis = redis
        self.pool = pool
        self.key = key
        self.max_length = max_length
        self._queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_LIMIT)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._stopped = False
        self._kick = asyncio.Event()
        # plain counters, read by /metrics and the middleware
        self.appended = 0  # XADDed by this process's relay
        self.dropped = 0
        self.queued = 0  # sequence numbers: live events queued, and written to the outbox
        self.written = 0
        self.recorded = 0  # events written in callers' transactions
        self._written_progress = asyncio.Event()
        # relay passes: started (under the relay lock) and completed (the outbox drained)
        self._passes_started = 0
        self._passes_done = 0
        self._relay_progress = asyncio.Event()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._write(), name="vtp-event-writer"),
            asyncio.create_task(self._relay(), name="vtp-event-relay"),
        ]

    # --- writing events ---------------------------------------------------------------------

    async def record(self, conn: asyncpg.Connection, events: Sequence[Event]) -> None:
        """Write events in the caller's transaction (call it after the change, last)."""
        await db.insert(conn, [_row(e) for e in events])
        self.recorded += len(events)

    def emit(
        self,
        type: EventType,
        *,
        course_id: Any = None,
        session_id: Any = None,
        **data: Any,
    ) -> Event | None:
        """Queue a live event for the outbox; returns it (None once closed or when full)."""
        if self._closing:
            return None
        event = new_event(type, course_id=course_id, session_id=session_id, **data)
        try:
            self._queue.put_nowait(event)
            self.queued += 1
        except asyncio.QueueFull:
            self.dropped += 1
            logger.error("event queue full: %s %s dropped", event.type, event.id)
            return None
        return event

    async def _write(self) -> None:
        delay = RETRY_FIRST_S
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            while True:
                try:
                    async with self.pool.acquire() as conn, conn.transaction():
                        await db.insert(conn, [_row(e) for e in batch])
                    delay = RETRY_FIRST_S
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.warning("events not written to the outbox, retrying", exc_info=True)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
            for _ in batch:
                self._queue.task_done()
            self.written += len(batch)
            self._written_progress.set()
            self._written_progress = asyncio.Event()
            self.kick()

    # --- the relay --------------------------------------------------------------------------

    def kick(self) -> None:
        """Relay now (events were committed here)."""
        self._kick.set()

    async def append(self, rows: Sequence[db.OutboxRow]) -> None:
        """XADD the rows in order (one round trip)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for row in rows:
                pipe.xadd(
                    self.key,
                    {"event": row.body, "type": row.event_type},
                    maxlen=self.max_length,
                    approximate=True,
                )
            await pipe.execute()
        self.appended += len(rows)

    async def relay_once(self) -> bool:
        """Move the outbox to the stream; False if another relay holds the lock."""
        number = 0
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                if not await db.try_relay_lock(conn):
                    return False
                if not number:
                    self._passes_started += 1
                    number = self._passes_started
                rows = await db.oldest(conn, BATCH)
                if rows:
                    await self.append(rows)  # (fails: rolled back, the rows stay)
                    await db.delete(conn, [r.seq for r in rows])
            if len(rows) < BATCH:
                self._passes_done = max(self._passes_done, number)
                self._relay_progress.set()
                self._relay_progress = asyncio.Event()
                return True

    async def _relay(self) -> None:
        delay = RETRY_FIRST_S
        while not self._stopped:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), POLL_S)
            self._kick.clear()
            try:
                if not await self.relay_once():
                    # another node is relaying: our rows are in its next batch or ours
                    await asyncio.sleep(LOCK_RETRY_S)
                    self.kick()
                delay = RETRY_FIRST_S
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("event relay failed, retrying", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                self.kick()

    # --- waiting ----------------------------------------------------------------------------

    async def written_through(self, seq: int, timeout_s: float = WRITE_WAIT_S) -> bool:
        """Wait until the live events queued up to ``seq`` are in the outbox."""
        return await _until(lambda: self.written >= seq, lambda: self._written_progress, timeout_s)

    async def relayed(self, timeout_s: float = WRITE_WAIT_S) -> bool:
        """Wait until what was committed before this call is in the stream (a relay pass
        that began after it drained the outbox, here or on another node)."""
        after = self._passes_started
        self.kick()
        return await _until(
            lambda: self._passes_done > after, lambda: self._relay_progress, timeout_s
        )

    async def settled(self, seq: int, timeout_s: float = WRITE_WAIT_S) -> bool:
        """Live events queued up to ``seq`` and events committed so far are in the stream."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        if not await self.written_through(seq, timeout_s):
            return False
        return await self.relayed(max(0.0, deadline - loop.time()))

    async def flush(self) -> None:
        """Wait until everything emitted or committed so far is in the stream (tests,
        shutdown)."""
        await self._queue.join()
        while True:
            if await self.relay_once():
                return
            await asyncio.sleep(LOCK_RETRY_S)  # (another node is relaying: then us)

    async def close(self, timeout_s: float = 5.0) -> None:
        self._closing = True
        try:
            await asyncio.wait_for(self.flush(), timeout_s)
        except Exception:
            # (what is in the outbox is relayed by any node later)
            if self._queue.qsize():
                logger.error("events: %d lost at shutdown (not in the outbox)", self._queue.qsize())
            else:
                logger.warning("events: left in the outbox at shutdown", exc_info=True)
        self._stopped = True
        # redis-py may swallow a cancellation that lands in a command: cancel until done
        for task in self._tasks:
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)


async def _until(
    done: Callable[[], bool], progress: Callable[[], asyncio.Event], timeout_s: float
) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        try:
            await asyncio.wait_for(progress().wait(), remaining)
        except TimeoutError:
            return False
    return True


EVENTS = web.AppKey("events", EventStream)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def events_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    stream = request.app.get(EVENTS)
    if stream is None:
        return await handler(request)
    before = (stream.queued, stream.recorded)
    response = await handler(request)
    if (stream.queued, stream.recorded) != before and not isinstance(
        response, web.WebSocketResponse
    ):
        await stream.settled(stream.queued)
    return response


def emit(
    app: web.Application,
    type: EventType,
    *,
    course_id: Any = None,
    session_id: Any = None,
    **data: Any,
) -> None:
    """The one-line hook for live events: queue one if the app has an event stream."""
    stream = app.get(EVENTS)
    if stream is not None:
        stream.emit(type, course_id=course_id, session_id=session_id, **data)


def committed(app: web.Application) -> None:
    """Events were just committed outside a request (which relays them on its way out):
    relay now rather than at the next poll."""
    stream = app.get(EVENTS)
    if stream is not None:
        stream.kick()


async def record(
    app: web.Application,
    conn: asyncpg.Connection,
    type: EventType,
    *,
    course_id: Any = None,
    session_id: Any = None,
    **data: Any,
) -> Event | None:
    """The one-line hook for a change: its event, in the change's transaction."""
    stream = app.get(EVENTS)
    if stream is None:
        return None
    event = new_event(type, course_id=course_id, session_id=session_id, **data)
    await stream.record(conn, [event])
    return event


async def events_ctx(app: web.Application) -> AsyncIterator[None]:
    """``app.cleanup_ctx`` entry, after the database and Redis."""
    from vtp.appkeys import CONFIG, DB, REDIS

    config = app[CONFIG]
    stream = EventStream(app[REDIS], app[DB], config.events_stream, config.events_max_length)
    stream.start()
    app[EVENTS] = stream
    try:
        yield
    finally:
        await stream.close()
