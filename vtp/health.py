"""Health of VTP's dependencies, shared by GET /ready and `vtp check`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from redis.asyncio import Redis

from vtp.storage import ObjectStore

_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    name: str
    ok: bool
    latency_ms: float
    backend: str
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "ok" if self.ok else "down",
            "latency_ms": self.latency_ms,
            "backend": self.backend,
        }
        if self.error:
            body["error"] = self.error
        return body


async def _probe(name: str, backend: str, check: Callable[[], Awaitable[Any]]) -> ComponentHealth:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), _TIMEOUT_S)
    except Exception as exc:
        detail = str(exc) or type(exc).__name__
        return ComponentHealth(name, False, _ms(started), backend, detail)
    return ComponentHealth(name, True, _ms(started), backend)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def check_all(
    pool: asyncpg.Pool,
    redis: Redis,
    store: ObjectStore,
    *,
    embedded_db: bool,
    embedded_redis: bool,
) -> list[ComponentHealth]:
    async def db() -> None:
        async with pool.acquire(timeout=_TIMEOUT_S) as conn:
            await conn.fetchval("SELECT 1")

    async def kv() -> None:
        await redis.ping()

    return list(
        await asyncio.gather(
            _probe("postgres", "embedded" if embedded_db else "server", db),
            _probe("redis", "in-process" if embedded_redis else "server", kv),
            _probe("object_store", store.name, store.ping),
        )
    )
