"""The event outbox (``event_outbox``): events written in the transaction of the change
they report, read in order and deleted by the relay once they are in the Redis Stream
(:mod:`vtp.events.stream`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

# Advisory lock classes (the two-int form: a key space apart from single-key locks such
# as the migrations'). ORDER: one lock per session or course, held by a transaction that
# writes its events until it commits, so the seq order of one key is its commit order.
# RELAY: one relay at a time in the whole cluster appends rows to the stream.
_ORDER_CLASS = 0x5654_0E01
_RELAY_CLASS = 0x5654_0E02


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    event_id: str
    event_type: str
    body: str


@dataclass(frozen=True, slots=True)
class NewRow:
    order_key: str  # session id, else course id, else "" (one lock each)
    event_id: str
    event_type: str
    body: str


async def insert(conn: asyncpg.Connection, rows: list[NewRow]) -> None:
    """Write events in the caller's transaction (rows of one key keep their list order).

    The order locks are taken in a fixed order, so two writers never deadlock on them;
    call this last in a transaction (after its row locks)."""
    if not rows:
        return
    for key in sorted({r.order_key for r in rows}):
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1::int4, hashtext($2))", _ORDER_CLASS, key
        )
    await conn.executemany(
        "INSERT INTO event_outbox (event_id, event_type, body) VALUES ($1, $2, $3)",
        [(r.event_id, r.event_type, r.body) for r in rows],
    )


async def try_relay_lock(conn: asyncpg.Connection) -> bool:
    """The relay's turn for this transaction (False: another relay has it now)."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1::int4, 0)", _RELAY_CLASS))


async def oldest(conn: Conn, limit: int) -> list[OutboxRow]:
    rows = await conn.fetch(
        "SELECT seq, event_id, event_type, body FROM event_outbox ORDER BY seq LIMIT $1", limit
    )
    return [OutboxRow(r["seq"], r["event_id"], r["event_type"], r["body"]) for r in rows]


async def delete(conn: Conn, seqs: list[int]) -> None:
    await conn.execute("DELETE FROM event_outbox WHERE seq = ANY($1::bigint[])", seqs)


async def count(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM event_outbox"))
