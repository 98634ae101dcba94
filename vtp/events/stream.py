"""Appending events to the Redis Stream, in the order they were emitted.

Call sites run after the change is committed and must not fail because of Redis, so
:meth:`EventStream.emit` is synchronous: it queues the event and one writer task appends
the queue to the stream (``XADD MAXLEN ~``, pipelined), which keeps the process's
emission order in the stream. If Redis is unreachable the writer retries with backoff;
the queue is bounded, and what overflows it is dropped and counted (a class never waits
for its event stream).

An API request that emitted events answers only once they are in the stream (or after
``WRITE_WAIT_S``): :func:`events_middleware`. So what a client does next, on any node,
comes after them in the stream: a session's events stay in order across nodes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from vtp.events.envelope import Event, EventType, new_event

logger = logging.getLogger(__name__)

QUEUE_LIMIT = 50_000
BATCH = 256
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0
WRITE_WAIT_S = 1.0


class EventStream:
    def __init__(self, redis: Redis, key: str, max_length: int) -> None:
        self.redis = redis
        self.key = key
        self.max_length = max_length
        self._queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_LIMIT)
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        # plain counters, read by /metrics
        self.appended = 0
        self.dropped = 0
        self.queued = 0  # sequence numbers: events queued, and written, so far
        self.written = 0
        self._progress = asyncio.Event()

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write(), name="vtp-event-writer")

    def emit(
        self,
        type: EventType,
        *,
        course_id: Any = None,
        session_id: Any = None,
        **data: Any,
    ) -> Event | None:
        """Queue an event for the stream; returns it (None once closed or when full)."""
        if self._closing:
            return None
        event = new_event(type, course_id=course_id, session_id=session_id, **data)
        try:
            self._queue.put_nowait(event)
            self.queued += 1
        except asyncio.QueueFull:
            self.dropped += 1
            logger.error("event stream queue full: %s %s dropped", event.type, event.id)
            return None
        return event

    async def append(self, events: list[Event]) -> None:
        """XADD the events in order (one round trip)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(
                    self.key,
                    {"event": event.dumps(), "type": event.type},
                    maxlen=self.max_length,
                    approximate=True,
                )
            await pipe.execute()
        self.appended += len(events)

    async def _write(self) -> None:
        delay = RETRY_FIRST_S
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            while True:
                try:
                    await self.append(batch)
                    delay = RETRY_FIRST_S
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.warning("event stream: XADD failed, retrying", exc_info=True)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
            for _ in batch:
                self._queue.task_done()
            self.written += len(batch)
            self._progress.set()
            self._progress = asyncio.Event()

    async def written_through(self, seq: int, timeout_s: float = WRITE_WAIT_S) -> bool:
        """Wait until the events queued up to ``seq`` are in the stream (False: timed out)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.written < seq:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._progress.wait(), remaining)
            except TimeoutError:
                return False
        return True

    async def flush(self) -> None:
        """Wait until everything queued so far is in the stream (tests, shutdown)."""
        await self._queue.join()

    async def close(self, timeout_s: float = 5.0) -> None:
        self._closing = True
        try:
            await asyncio.wait_for(self.flush(), timeout_s)
        except TimeoutError:
            logger.error("event stream: %d event(s) not written at shutdown", self._queue.qsize())
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)


EVENTS = web.AppKey("events", EventStream)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def events_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    stream = request.app.get(EVENTS)
    if stream is None:
        return await handler(request)
    before = stream.queued
    response = await handler(request)
    if stream.queued != before and not isinstance(response, web.WebSocketResponse):
        await stream.written_through(stream.queued)
    return response


def emit(
    app: web.Application,
    type: EventType,
    *,
    course_id: Any = None,
    session_id: Any = None,
    **data: Any,
) -> None:
    """The one-line hook for call sites: queue an event if the app has an event stream."""
    stream = app.get(EVENTS)
    if stream is not None:
        stream.emit(type, course_id=course_id, session_id=session_id, **data)


async def events_ctx(app: web.Application) -> AsyncIterator[None]:
    """``app.cleanup_ctx`` entry, after Redis."""
    from vtp.appkeys import CONFIG, REDIS

    config = app[CONFIG]
    stream = EventStream(app[REDIS], config.events_stream, config.events_max_length)
    stream.start()
    app[EVENTS] = stream
    try:
        yield
    finally:
        await stream.close()
