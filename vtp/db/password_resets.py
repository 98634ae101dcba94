"""One-time password-reset tokens (table password_resets): stored as SHA-256 hashes,
short-lived, spent by the first use."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime
from typing import TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def issue(
    conn: Conn, user_id: uuid.UUID, *, ttl_s: int, created_by: uuid.UUID | None
) -> tuple[str, datetime]:
    """A new reset token for the user and when it expires (the token itself is not kept)."""
    token = secrets.token_urlsafe(32)
    expires_at = await conn.fetchval(
        """INSERT INTO password_resets (token_hash, user_id, created_by, expires_at)
           VALUES ($1, $2, $3, now() + make_interval(secs => $4))
           RETURNING expires_at""",
        token_hash(token),
        user_id,
        created_by,
        float(ttl_s),
    )
    return token, expires_at


async def holder(conn: Conn, token: str) -> uuid.UUID | None:
    """The user a token may reset, if it is unused and unexpired (spends nothing)."""
    user_id: uuid.UUID | None = await conn.fetchval(
        """SELECT user_id FROM password_resets
           WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()""",
        token_hash(token),
    )
    return user_id


async def spend(conn: asyncpg.Connection, token: str) -> uuid.UUID | None:
    """Use a token once (in the caller's transaction): the user it resets, or None when it
    is unknown, used or expired. Every other open link of that user is spent with it."""
    user_id: uuid.UUID | None = await conn.fetchval(
        """UPDATE password_resets SET used_at = now()
           WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
           RETURNING user_id""",
        token_hash(token),
    )
    if user_id is not None:
        await conn.execute(
            "UPDATE password_resets SET used_at = now() WHERE user_id = $1 AND used_at IS NULL",
            user_id,
        )
    return user_id
