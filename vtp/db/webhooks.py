"""Webhook endpoints and their delivery log (``webhook_endpoints``, ``webhook_deliveries``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from vtp.db.keyset import Where
from vtp.db.models import WebhookDelivery, WebhookEndpoint

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
EDITABLE = ("url", "secret_sealed", "event_types", "description", "enabled")


async def create_endpoint(
    conn: Conn,
    *,
    url: str,
    secret_sealed: str,
    event_types: list[str],
    description: str,
    enabled: bool,
    created_by: uuid.UUID | None,
) -> WebhookEndpoint:
    row = await conn.fetchrow(
        """INSERT INTO webhook_endpoints (url, secret_sealed, event_types, description,
                                          enabled, created_by)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
        url,
        secret_sealed,
        event_types,
        description,
        enabled,
        created_by,
    )
    return WebhookEndpoint.from_record(row)


async def get_endpoint(conn: Conn, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
    row = await conn.fetchrow("SELECT * FROM webhook_endpoints WHERE id = $1", endpoint_id)
    return WebhookEndpoint.from_record(row) if row else None


async def list_endpoints(
    conn: Conn, *, after: tuple[datetime, uuid.UUID] | None = None, limit: int = 100
) -> list[WebhookEndpoint]:
    where = Where()
    where.after(after, "w")
    limit_sql = where.limit(limit)
    rows = await conn.fetch(
        f"SELECT w.* FROM webhook_endpoints w {where.sql()} ORDER BY w.created_at, w.id "
        f"{limit_sql}",
        *where.params,
    )
    return [WebhookEndpoint.from_record(r) for r in rows]


async def enabled_endpoints(conn: Conn) -> list[WebhookEndpoint]:
    rows = await conn.fetch("SELECT * FROM webhook_endpoints WHERE enabled ORDER BY created_at")
    return [WebhookEndpoint.from_record(r) for r in rows]


async def update_endpoint(
    conn: Conn, endpoint_id: uuid.UUID, changes: dict[str, Any]
) -> WebhookEndpoint | None:
    columns = [c for c in changes if c in EDITABLE]
    sets = "".join(f", {col} = ${i + 2}" for i, col in enumerate(columns))
    row = await conn.fetchrow(
        f"UPDATE webhook_endpoints SET updated_at = now(){sets} WHERE id = $1 RETURNING *",
        endpoint_id,
        *(changes[c] for c in columns),
    )
    return WebhookEndpoint.from_record(row) if row else None


async def plain_secrets(conn: Conn) -> list[tuple[uuid.UUID, str]]:
    """Endpoints whose secret is still plain text (registered before migration 008)."""
    rows = await conn.fetch("SELECT id, secret FROM webhook_endpoints WHERE secret IS NOT NULL")
    return [(r["id"], r["secret"]) for r in rows]


async def replace_plain_secret(conn: Conn, endpoint_id: uuid.UUID, plain: str, sealed: str) -> bool:
    """Store the sealed secret and forget the plain one (if it is still that one)."""
    result = await conn.execute(
        """UPDATE webhook_endpoints SET secret_sealed = $3, secret = NULL
           WHERE id = $1 AND secret = $2""",
        endpoint_id,
        plain,
        sealed,
    )
    return str(result).endswith(" 1")


async def delete_endpoint(conn: Conn, endpoint_id: uuid.UUID) -> bool:
    result = await conn.execute("DELETE FROM webhook_endpoints WHERE id = $1", endpoint_id)
    return str(result).endswith(" 1")


async def log_attempt(
    conn: Conn,
    *,
    endpoint_id: uuid.UUID,
    event_id: str,
    event_type: str,
    attempt: int,
    outcome: str,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    payload: dict[str, Any] | None = None,
) -> None:
    """One attempt's record (nothing if the endpoint was deleted meanwhile)."""
    await conn.execute(
        """INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, attempt, outcome,
                                           status_code, error, duration_ms, payload)
           SELECT id, $2, $3, $4, $5, $6, $7, $8, $9 FROM webhook_endpoints WHERE id = $1""",
        endpoint_id,
        event_id,
        event_type,
        attempt,
        outcome,
        status_code,
        error[:1000] if error else None,
        duration_ms,
        payload if outcome == "dead" else None,
    )


async def list_deliveries(
    conn: Conn,
    endpoint_id: uuid.UUID,
    *,
    outcome: str | None = None,
    event_id: str | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[WebhookDelivery]:
    """Newest first."""
    where = Where(endpoint_id)
    where.clauses.append("d.endpoint_id = $1")
    where.add_if(outcome, "d.outcome = {}")
    where.add_if(event_id, "d.event_id = {}")
    where.after(after, "d", desc=True)
    limit_sql = where.limit(limit)
    rows = await conn.fetch(
        f"SELECT d.* FROM webhook_deliveries d {where.sql()} "
        f"ORDER BY d.created_at DESC, d.id DESC {limit_sql}",
        *where.params,
    )
    return [WebhookDelivery.from_record(r) for r in rows]
