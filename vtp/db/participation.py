"""Participation counters per participant and session (``session_participation``):
talk time and turns (from the SFU's audio levels), hands raised. Chat messages and time
present are counted from ``chats`` and ``session_participants`` when read."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True, slots=True)
class Increment:
    session_id: uuid.UUID
    user_id: uuid.UUID
    talk_ms: int = 0
    turns: int = 0
    hands_raised: int = 0


@dataclass(frozen=True, slots=True)
class Participation:
    talk_ms: int = 0
    turns: int = 0
    hands_raised: int = 0
    chat_messages: int = 0


async def add(conn: Conn, increments: list[Increment]) -> None:
    """Add to the counters (rows of sessions or users deleted meanwhile are skipped)."""
    if not increments:
        return
    await conn.executemany(
        """INSERT INTO session_participation (session_id, user_id, talk_ms, turns, hands_raised)
           SELECT s.id, u.id, $3, $4, $5 FROM live_sessions s, users u
           WHERE s.id = $1 AND u.id = $2
           ON CONFLICT (session_id, user_id) DO UPDATE SET
               talk_ms = session_participation.talk_ms + EXCLUDED.talk_ms,
               turns = session_participation.turns + EXCLUDED.turns,
               hands_raised = session_participation.hands_raised + EXCLUDED.hands_raised""",
        [(i.session_id, i.user_id, i.talk_ms, i.turns, i.hands_raised) for i in increments],
    )


async def of_session(conn: Conn, session_id: uuid.UUID) -> dict[uuid.UUID, Participation]:
    rows = await conn.fetch(
        """SELECT user_id, sum(talk_ms)::bigint AS talk_ms, sum(turns)::int AS turns,
                  sum(hands_raised)::int AS hands_raised, sum(chat_messages)::int AS chat_messages
           FROM (SELECT user_id, talk_ms, turns, hands_raised, 0 AS chat_messages
                 FROM session_participation WHERE session_id = $1
                 UNION ALL
                 SELECT author_id, 0, 0, 0, 1 FROM chats
                 WHERE session_id = $1 AND author_id IS NOT NULL AND deleted_at IS NULL) t
           GROUP BY user_id""",
        session_id,
    )
    return {
        r["user_id"]: Participation(r["talk_ms"], r["turns"], r["hands_raised"], r["chat_messages"])
        for r in rows
    }


async def claim_summary(conn: asyncpg.Connection, session_id: uuid.UUID) -> bool:
    """In the transaction that writes the session's summary: False if one was written."""
    inserted = await conn.fetchval(
        """INSERT INTO session_summaries (session_id) VALUES ($1)
           ON CONFLICT DO NOTHING RETURNING true""",
        session_id,
    )
    return bool(inserted)


async def unsummarised(conn: Conn, older_than_s: float, limit: int = 20) -> list[uuid.UUID]:
    """Sessions that ended over ``older_than_s`` ago and have no summary yet."""
    rows = await conn.fetch(
        """SELECT s.id FROM live_sessions s
           LEFT JOIN session_summaries m ON m.session_id = s.id
           WHERE s.status = 'ended' AND m.session_id IS NULL
             AND s.ended_at < now() - make_interval(secs => $1)
           ORDER BY s.ended_at LIMIT $2""",
        older_than_s,
        limit,
    )
    return [r["id"] for r in rows]
