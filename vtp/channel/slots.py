"""Per-user limits every WebSocket endpoint applies (the classroom live channel, SFU
signalling): a cap on the sockets a user holds open, counted over every process
(:class:`~vtp.limits.leases.Leases`), and the close code of a socket over a limit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from aiohttp import web

from vtp.api.errors import ApiError
from vtp.appkeys import CONFIG, WEBSOCKET_LEASES

logger = logging.getLogger(__name__)

# The socket sent faster than its rate (``rate_limited``), or its user already holds as
# many sockets as allowed (``too_many_sessions``). HTTP's 429, in the 4000 range.
CLOSE_LIMITED = 4429


def too_many_sessions(limit: int) -> ApiError:
    return ApiError(
        429,
        "too_many_sessions",
        f"you have {limit} live connections open already (at most {limit}); close one",
        {"limit": limit},
    )


async def take_slot(app: web.Application, user_id: uuid.UUID) -> str | None:
    """A lease on one of the user's WebSocket slots, or None when all are taken."""
    return await app[WEBSOCKET_LEASES].take(str(user_id), app[CONFIG].max_websockets_per_user)


async def give_back(app: web.Application, lease: str | None) -> None:
    """Release a slot (safe to call from a cancelled handler: it finishes anyway)."""
    if lease is None:
        return
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.shield(app[WEBSOCKET_LEASES].give_back(lease))
