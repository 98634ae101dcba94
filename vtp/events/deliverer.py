"""Webhook delivery from the event stream.

A Redis consumer group (``vtp-webhooks``) reads the stream. One node at a time delivers
(a lease in Redis, renewed while it runs): webhooks then reach each endpoint in stream
order, so per session in the order things happened. When the delivering node dies, the
next one takes the lease and re-claims what it left unacknowledged (``XAUTOCLAIM`` after
``webhook_claim_idle_s``); those events go out again with the same ``webhook-id``.

Each endpoint has a lane: a bounded queue and one task that delivers its events one
after another, retrying a failure with exponential backoff and writing every attempt to
``webhook_deliveries`` (the last failed one as a dead-letter record with the payload).
An entry is acknowledged (``XACK``) once every matching endpoint is done with it. Lanes
run beside the classes: a slow or dead endpoint holds its own lane and one of the
``webhook_concurrency`` request slots, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from vtp.config import Config
from vtp.db import webhooks as db
from vtp.db.models import WebhookEndpoint
from vtp.events import signing
from vtp.events.envelope import Event
from vtp.events.secret_box import SECRET_BOX, SecretBox, SecretUnreadable, seal_plain_secrets
from vtp.events.targets import GuardedResolver, TargetRefused, check_url

logger = logging.getLogger(__name__)

GROUP = "vtp-webhooks"
LEASE_S = 15.0
READ_BLOCK_MS = 1000
READ_COUNT = 100
ENDPOINTS_TTL_S = 30.0
USER_AGENT = "VTP-Webhooks/1"

# Renew the lease only while we hold it (compare-and-set).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def version_key(stream: str) -> str:
    """Bumped whenever an endpoint changes: deliverers reload their list."""
    return f"{stream}:webhooks:version"


@dataclass(eq=False)
class _Entry:
    entry_id: bytes
    event: Event
    body: bytes
    remaining: int


@dataclass(eq=False)
class _Lane:
    endpoint_id: uuid.UUID
    queue: asyncio.Queue[_Entry]
    task: asyncio.Task[None] | None = None
    busy: bool = field(default=False)


class Deliverer:
    def __init__(
        self,
        config: Config,
        redis: Redis,
        pool: asyncpg.Pool,
        *,
        lease_s: float = LEASE_S,
        box: SecretBox | None = None,
    ) -> None:
        self.config = config
        self.box = box or SecretBox.from_config(config)
        self.lease_s = lease_s
        self.redis = redis
        self.pool = pool
        self.stream = config.events_stream
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_key = f"{self.stream}:webhooks:leader"
        self._endpoints: dict[uuid.UUID, WebhookEndpoint] = {}
        self._endpoints_version: Any = None
        self._endpoints_at = -ENDPOINTS_TTL_S
        self._lanes: dict[uuid.UUID, _Lane] = {}
        self._in_flight: set[bytes] = set()  # entry ids handed to lanes, not yet acked
        self._slots = asyncio.Semaphore(config.webhook_concurrency)
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.delivered = 0
        self.failed = 0
        self.dead = 0

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="vtp-webhook-deliverer")

    async def close(self) -> None:
        """Stop at once; what is not acknowledged is delivered by the next deliverer."""
        self._stopping = True
        task, self._task = self._task, None
        # redis-py may swallow a cancellation that lands in a blocking XREADGROUP: cancel
        # until the task is done (the loops also stop at the flag, within one read).
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        await self._stop_lanes()
        if self._http is not None:
            await self._http.close()
            self._http = None
        with contextlib.suppress(Exception):
            await self.redis.eval(_RELEASE, 1, self.lease_key, self.consumer)

    async def _stop_lanes(self) -> None:
        lanes, self._lanes = list(self._lanes.values()), {}
        self._in_flight.clear()  # (unacknowledged: re-claimed later)
        for lane in lanes:
            if lane.task is not None:
                lane.task.cancel()
        await asyncio.gather(*(lane.task for lane in lanes if lane.task), return_exceptions=True)

    async def _run(self) -> None:
        await self._ensure_group()
        while not self._stopping:
            try:
                if await self._acquire_lease():
                    await self._lead()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("webhook deliverer failed; starting over")
                await self._stop_lanes()
            await asyncio.sleep(self.lease_s / 3)

    async def _ensure_group(self) -> None:
        while True:
            try:
                await self.redis.xgroup_create(self.stream, GROUP, id="$", mkstream=True)
                return
            except Exception as exc:
                if "BUSYGROUP" in str(exc):
                    return
                logger.warning("webhook deliverer: cannot create the consumer group: %s", exc)
                await asyncio.sleep(1.0)

    async def _acquire_lease(self) -> bool:
        return bool(
            await self.redis.set(
                self.lease_key, self.consumer, nx=True, px=int(self.lease_s * 1000)
            )
        )

    async def _renew_lease(self) -> bool:
        renewed = await self.redis.eval(
            _RENEW, 1, self.lease_key, self.consumer, int(self.lease_s * 1000)
        )
        return bool(renewed)

    async def _lead(self) -> None:
        """Deliver while this process holds the lease."""
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    resolver=GuardedResolver(self.config.webhook_allow_private),
                    limit=self.config.webhook_concurrency,
                ),
                trust_env=False,
            )
        renewed_at = time.monotonic()
        claim_from: bytes | str = "0-0"
        last_claim = -1e9
        try:
            while not self._stopping:
                now = time.monotonic()
                if now - renewed_at >= self.lease_s / 3:
                    if not await self._renew_lease():
                        logger.warning("webhook deliverer: lease lost")
                        return
                    renewed_at = now
                if now - last_claim >= min(self.config.webhook_claim_idle_s / 2, 5.0):
                    last_claim = now
                    claim_from = await self._claim(claim_from)
                entries = await self.redis.xreadgroup(
                    GROUP,
                    self.consumer,
                    {self.stream: ">"},
                    count=READ_COUNT,
                    block=READ_BLOCK_MS,
                )
                batch = _entries(entries)
                if batch:
                    await self._refresh_endpoints()  # (registered just before?)
                for entry_id, fields in batch:
                    await self._dispatch(entry_id, fields)
        finally:
            await self._stop_lanes()

    async def _claim(self, start: bytes | str) -> bytes | str:
        """Take over entries a crashed deliverer left pending (oldest first)."""
        idle_ms = int(self.config.webhook_claim_idle_s * 1000)
        while True:
            result = await self.redis.xautoclaim(
                self.stream, GROUP, self.consumer, idle_ms, start_id=start, count=READ_COUNT
            )
            next_start, items = result[0], result[1]
            if len(result) > 2 and result[2]:  # trimmed away before delivery
                await self.redis.xack(self.stream, GROUP, *result[2])
            if items:
                await self._refresh_endpoints()
            for entry_id, fields in items:
                if fields and entry_id not in self._in_flight:
                    logger.info("webhook deliverer: re-claimed %s", entry_id)
                    await self._dispatch(entry_id, fields)
            if next_start in (b"0-0", "0-0") or not items:
                return "0-0"
            start = next_start

    async def _refresh_endpoints(self) -> None:
        version = await self.redis.get(version_key(self.stream))
        now = time.monotonic()
        if version == self._endpoints_version and now - self._endpoints_at < ENDPOINTS_TTL_S:
            return
        endpoints = await db.enabled_endpoints(self.pool)
        self._endpoints = {e.id: e for e in endpoints}
        self._endpoints_version = version
        self._endpoints_at = now
        # Lanes of endpoints deleted or disabled: stop them once idle (what is still
        # queued is skipped by _deliver and acknowledged).
        for endpoint_id, lane in list(self._lanes.items()):
            if endpoint_id not in self._endpoints and lane.queue.empty() and not lane.busy:
                del self._lanes[endpoint_id]
                if lane.task is not None:
                    lane.task.cancel()

    # --- dispatch and lanes --------------------------------------------------------------------

    async def _dispatch(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        raw: bytes = fields.get(b"event") or b""
        try:
            event = Event.loads(raw)
        except (ValueError, KeyError, TypeError):
            logger.error("webhook deliverer: entry %s is not an event; skipped", entry_id)
            await self.redis.xack(self.stream, GROUP, entry_id)
            return
        targets = [
            e for e in self._endpoints.values() if not e.event_types or event.type in e.event_types
        ]
        if not targets:
            await self.redis.xack(self.stream, GROUP, entry_id)
            return
        entry = _Entry(entry_id, event, raw, len(targets))
        self._in_flight.add(entry_id)
        for endpoint in targets:
            lane = self._lane(endpoint.id)
            try:
                lane.queue.put_nowait(entry)
            except asyncio.QueueFull:
                await self._log(endpoint.id, entry, 1, "dead", None, "endpoint backlog full", 0)
                await self._done(entry)

    def _lane(self, endpoint_id: uuid.UUID) -> _Lane:
        lane = self._lanes.get(endpoint_id)
        if lane is None:
            lane = _Lane(endpoint_id, asyncio.Queue(self.config.webhook_backlog))
            lane.task = asyncio.create_task(
                self._run_lane(lane), name=f"vtp-webhook-lane-{endpoint_id}"
            )
            self._lanes[endpoint_id] = lane
        return lane

    async def _run_lane(self, lane: _Lane) -> None:
        while True:
            entry = await lane.queue.get()
            lane.busy = True
            try:
                await self._deliver(lane.endpoint_id, entry)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("webhook lane %s failed on %s", lane.endpoint_id, entry.event.id)
            finally:
                lane.busy = False
            await self._done(entry)

    async def _done(self, entry: _Entry) -> None:
        entry.remaining -= 1
        if entry.remaining == 0:
            self._in_flight.discard(entry.entry_id)
            await self.redis.xack(self.stream, GROUP, entry.entry_id)

    async def _deliver(self, endpoint_id: uuid.UUID, entry: _Entry) -> None:
        config = self.config
        attempts = config.webhook_max_attempts
        for attempt in range(1, attempts + 1):
            endpoint = self._endpoints.get(endpoint_id)
            if endpoint is None:
                return  # deleted or disabled meanwhile: nothing more to send it
            last = attempt == attempts
            status, error, elapsed_ms = await self._attempt(endpoint, entry)
            if error is None:
                self.delivered += 1
                await self._log(endpoint_id, entry, attempt, "delivered", status, None, elapsed_ms)
                return
            refused = error.startswith("refused: ")
            outcome = "dead" if last or refused else "failed"
            if outcome == "dead":
                self.dead += 1
            else:
                self.failed += 1
            await self._log(endpoint_id, entry, attempt, outcome, status, error, elapsed_ms)
            if outcome == "dead":
                return
            delay = min(
                config.webhook_retry_first_s * 2 ** (attempt - 1), config.webhook_retry_max_s
            )
            await asyncio.sleep(delay)

    async def _attempt(
        self, endpoint: WebhookEndpoint, entry: _Entry
    ) -> tuple[int | None, str | None, int]:
        """(status, error or None on success, milliseconds)."""
        config = self.config
        try:
            check_url(
                endpoint.url,
                allow_http=config.webhook_allow_http,
                allow_private=config.webhook_allow_private,
            )
        except TargetRefused as exc:
            return None, f"refused: {exc}", 0
        try:
            secret = self.box.open(endpoint.secret_sealed or "")
        except SecretUnreadable as exc:
            return None, f"refused: {exc}", 0
        assert self._http is not None
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **signing.headers(secret, entry.event.id, timestamp, entry.body),
        }
        started = time.monotonic()
        async with self._slots:
            try:
                async with self._http.post(
                    endpoint.url,
                    data=entry.body,
                    headers=headers,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=config.webhook_timeout_s),
                ) as response:
                    status = response.status
            except TimeoutError:
                return None, f"timed out after {config.webhook_timeout_s:g} s", _ms(started)
            except aiohttp.ClientError as exc:
                return None, f"{type(exc).__name__}: {exc}", _ms(started)
        if 200 <= status < 300:
            return status, None, _ms(started)
        return status, f"HTTP {status}", _ms(started)

    async def _log(
        self,
        endpoint_id: uuid.UUID,
        entry: _Entry,
        attempt: int,
        outcome: str,
        status: int | None,
        error: str | None,
        elapsed_ms: int,
    ) -> None:
        if outcome == "dead":
            logger.warning(
                "webhook %s to endpoint %s dead after %d attempt(s): %s",
                entry.event.id,
                endpoint_id,
                attempt,
                error,
            )
        try:
            await db.log_attempt(
                self.pool,
                endpoint_id=endpoint_id,
                event_id=entry.event.id,
                event_type=entry.event.type,
                attempt=attempt,
                outcome=outcome,
                status_code=status,
                error=error,
                duration_ms=elapsed_ms,
                payload=entry.event.to_json() if outcome == "dead" else None,
            )
        except Exception:
            logger.exception("webhook delivery log not written")

    def idle(self) -> bool:
        """No lane has work (tests poll this)."""
        return all(lane.queue.empty() and not lane.busy for lane in self._lanes.values())


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """XREADGROUP's entries of our one stream (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    streams = reply.items() if isinstance(reply, dict) else reply
    return [(entry_id, fields) for _, items in streams for entry_id, fields in items if fields]


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


DELIVERER = web.AppKey("webhook_deliverer", Deliverer)


async def deliverer_ctx(app: web.Application) -> AsyncIterator[None]:
    """``app.cleanup_ctx`` entry, after the database and Redis."""
    from vtp.appkeys import CONFIG, DB, REDIS

    box = SecretBox.from_config(app[CONFIG])
    app[SECRET_BOX] = box
    await seal_plain_secrets(app[DB], box)  # (endpoints registered before migration 008)
    deliverer = Deliverer(app[CONFIG], app[REDIS], app[DB], box=box)
    deliverer.start()
    app[DELIVERER] = deliverer
    try:
        yield
    finally:
        await deliverer.close()
