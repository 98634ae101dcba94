"""Queries on the users table."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TypeAlias

import asyncpg

from vtp.db.keyset import Where
from vtp.db.models import Role, User, UserCredentials

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
_COLUMNS = "id, email, display_name, role, is_active, last_login_at, created_at, updated_at"


class EmailTaken(Exception):
    pass


async def create_user(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    email: str,
    display_name: str,
    password_hash: str,
    role: Role = "student",
) -> User:
    try:
        row = await conn.fetchrow(
            f"""INSERT INTO users (email, display_name, password_hash, role)
                VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}""",
            email,
            display_name,
            password_hash,
            role,
        )
    except asyncpg.UniqueViolationError as exc:
        raise EmailTaken(email) from exc
    assert row is not None
    return User.from_record(row)


async def any_user(conn: Conn) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users)"))


async def get_user(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> User | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id)
    return User.from_record(row) if row else None


async def get_credentials(
    conn: asyncpg.Connection | asyncpg.Pool, email: str
) -> UserCredentials | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS}, password_hash FROM users WHERE lower(email) = lower($1)", email
    )
    if row is None:
        return None
    return UserCredentials(User.from_record(row), row["password_hash"])


async def record_login(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> None:
    await conn.execute("UPDATE users SET last_login_at = now() WHERE id = $1", user_id)


async def set_password(
    conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID, password_hash: str
) -> bool:
    status = await conn.execute(
        "UPDATE users SET password_hash = $2 WHERE id = $1",
        user_id,
        password_hash,
    )
    return str(status).endswith(" 1")


async def get_password_hash(
    conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID
) -> str | None:
    value: str | None = await conn.fetchval(
        "SELECT password_hash FROM users WHERE id = $1", user_id
    )
    return value


async def set_active(
    conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID, is_active: bool
) -> User | None:
    row = await conn.fetchrow(
        f"UPDATE users SET is_active = $2 WHERE id = $1 RETURNING {_COLUMNS}",
        user_id,
        is_active,
    )
    return User.from_record(row) if row else None


async def set_role(
    conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID, role: Role
) -> User | None:
    row = await conn.fetchrow(
        f"UPDATE users SET role = $2 WHERE id = $1 RETURNING {_COLUMNS}", user_id, role
    )
    return User.from_record(row) if row else None


async def set_display_name(conn: Conn, user_id: uuid.UUID, display_name: str) -> User | None:
    row = await conn.fetchrow(
        f"UPDATE users SET display_name = $2 WHERE id = $1 RETURNING {_COLUMNS}",
        user_id,
        display_name,
    )
    return User.from_record(row) if row else None


async def list_users(
    conn: Conn,
    *,
    search: str | None,
    role: Role | None,
    active: bool | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[User]:
    """Accounts in (created_at, id) order, `limit` + 1 of them (the page's look-ahead).
    `search` is a case-insensitive substring of the e-mail address or the display name
    (strpos, not LIKE: a user's % or _ is a character to find, not a wildcard)."""
    where = Where()
    if search:
        where.add(
            "(strpos(lower(email), lower({0})) > 0 OR strpos(lower(display_name), lower({0})) > 0)",
            search,
        )
    where.add_if(role, "role = {}")
    where.add_if(active, "is_active = {}")
    where.after(after, "users")
    limit_sql = where.limit(limit)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM users {where.sql()} ORDER BY created_at, id {limit_sql}",
        *where.params,
    )
    return [User.from_record(r) for r in rows]
