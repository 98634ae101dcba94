"""Telling "a backing service is down" apart from a bug, for the error middleware.

While PostgreSQL or Redis is unreachable every request that needs it fails; that is a
503 with `Retry-After` naming the dependency, not a 500. asyncpg reports a refused
connection as a bare OSError, so where the exception was raised (inside asyncpg or
redis) decides which service it was.
"""

from __future__ import annotations

import asyncpg
import redis.exceptions

from vtp.api.errors import ApiError

RETRY_AFTER_S = 5
NAMES = {"postgres": "PostgreSQL", "redis": "Redis"}

_POSTGRES_DOWN = (
    asyncpg.PostgresConnectionError,  # connection failure, does not exist, rejected
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,  # starting up or shutting down
    asyncpg.exceptions.TooManyConnectionsError,
)
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _raised_in(exc: BaseException) -> set[str]:
    packages = set()
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        packages.add(module.partition(".")[0])
        tb = tb.tb_next
    return packages


def _classify(exc: BaseException) -> str | None:
    if isinstance(exc, _REDIS_DOWN):
        return "redis"
    if isinstance(exc, _POSTGRES_DOWN):
        return "postgres"
    if isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc):
        return "postgres"  # "connection is closed" (other InterfaceErrors are bugs)
    if isinstance(exc, (OSError, TimeoutError)):
        where = _raised_in(exc)
        if "asyncpg" in where:
            return "postgres"
        if "redis" in where:
            return "redis"
    return None


def failed_dependency(exc: BaseException) -> str | None:
    """ "postgres" or "redis" if `exc` (or what caused it) says that service is down."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _classify(current)
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


def unavailable(dependency: str) -> ApiError:
    name = NAMES.get(dependency, dependency)
    return ApiError(
        503,
        "dependency_unavailable",
        f"{name} is not reachable right now; try again in a few seconds",
        {"dependency": dependency, "retry_after_s": RETRY_AFTER_S},
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )
