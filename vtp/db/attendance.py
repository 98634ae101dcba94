"""Attendance: `session_participants` rows written from SFU room joins and leaves.

:mod:`vtp.web.presence` calls `record_join_in_room` when a user's first way into a live
session's room opens (classroom channel or SFU peer of any kind) and `record_leave` when
their last one closes; one row per stay, so a user who drops out and comes back has
several rows, and their attendance is the union of the intervals.

From a room name: ``ticket = await vtp.db.sessions.join_ticket(pool, user_id=...,
is_admin=..., room_name=room)`` says whether the user may be in the room at all (None:
not a member of the session's course), with what role, and gives ``ticket.session_id``
for these functions. Ending a session (POST /sessions/{id}/end) closes every open row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeAlias

import asyncpg

from vtp.db.participation import Participation, of_session

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
ParticipantRole = Literal["presenter", "viewer"]


async def record_join(
    pool: Conn, session_id: uuid.UUID, user_id: uuid.UUID, role: ParticipantRole
) -> uuid.UUID | None:
    """Record a join; returns the row id, or None if the session is not live."""
    row_id = await pool.fetchval(
        """INSERT INTO session_participants (session_id, user_id, role)
           SELECT id, $2, $3 FROM live_sessions WHERE id = $1 AND status = 'live'
           RETURNING id""",
        session_id,
        user_id,
        role,
    )
    return row_id if isinstance(row_id, uuid.UUID) else None


async def record_join_in_room(
    pool: Conn, room_name: str, user_id: uuid.UUID, role: ParticipantRole
) -> tuple[uuid.UUID, uuid.UUID] | None:
    """Record a join by room name; returns (row id, session id), or None if the room is
    no live session's (an open room, or the session is not live)."""
    row = await pool.fetchrow(
        """INSERT INTO session_participants (session_id, user_id, role)
           SELECT id, $2, $3 FROM live_sessions WHERE room_name = $1 AND status = 'live'
           RETURNING id, session_id""",
        room_name,
        user_id,
        role,
    )
    return (row["id"], row["session_id"]) if row is not None else None


async def record_leave(
    pool: Conn,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    participant_id: uuid.UUID | None = None,
) -> bool:
    """Close the given join row (or the user's newest open one); False if none was open."""
    if participant_id is not None:
        result = await pool.execute(
            """UPDATE session_participants SET left_at = now()
               WHERE id = $1 AND session_id = $2 AND user_id = $3 AND left_at IS NULL""",
            participant_id,
            session_id,
            user_id,
        )
    else:
        result = await pool.execute(
            """UPDATE session_participants SET left_at = now()
               WHERE id = (SELECT id FROM session_participants
                           WHERE session_id = $1 AND user_id = $2 AND left_at IS NULL
                           ORDER BY joined_at DESC, id DESC LIMIT 1)""",
            session_id,
            user_id,
        )
    return str(result).endswith(" 1")


async def close_open(conn: Conn, session_id: uuid.UUID) -> list[uuid.UUID]:
    """Everyone still in the room leaves now (the session ended); returns who."""
    rows = await conn.fetch(
        """UPDATE session_participants SET left_at = now()
           WHERE session_id = $1 AND left_at IS NULL RETURNING user_id""",
        session_id,
    )
    return list(dict.fromkeys(r["user_id"] for r in rows))


@dataclass(frozen=True, slots=True)
class AttendanceLine:
    user_id: uuid.UUID
    display_name: str
    email: str
    course_role: str | None
    joins: int
    first_joined_at: datetime | None
    last_left_at: datetime | None
    attended_seconds: int
    present_now: bool
    participation: Participation = field(default_factory=Participation)

    def to_json(self) -> dict[str, object]:
        return {
            "user_id": str(self.user_id),
            "display_name": self.display_name,
            "email": self.email,
            "course_role": self.course_role,
            "joins": self.joins,
            "first_joined_at": self.first_joined_at.isoformat() if self.first_joined_at else None,
            "last_left_at": self.last_left_at.isoformat() if self.last_left_at else None,
            "attended_seconds": self.attended_seconds,
            "present_now": self.present_now,
            "talk_seconds": round(self.participation.talk_ms / 1000),
            "turns": self.participation.turns,
            "hands_raised": self.participation.hands_raised,
            "chat_messages": self.participation.chat_messages,
        }


def merged_seconds(intervals: list[tuple[datetime, datetime]]) -> int:
    """Length of the union of the intervals (two tabs open at once count once)."""
    total = 0.0
    current: tuple[datetime, datetime] | None = None
    for start, end in sorted(intervals):
        if current is None or start > current[1]:
            if current is not None:
                total += (current[1] - current[0]).total_seconds()
            current = (start, end)
        elif end > current[1]:
            current = (current[0], end)
    if current is not None:
        total += (current[1] - current[0]).total_seconds()
    return round(total)


async def attendance(conn: Conn, session_id: uuid.UUID) -> list[AttendanceLine]:
    """One line per user who joined, plus every active student who did not (0 joins),
    ordered by first join then name."""
    now = await conn.fetchval("SELECT now()")
    rows = await conn.fetch(
        """SELECT p.user_id, p.joined_at, p.left_at, s.ended_at,
                  u.display_name, u.email, e.role AS course_role
           FROM session_participants p
           JOIN live_sessions s ON s.id = p.session_id
           JOIN users u ON u.id = p.user_id
           LEFT JOIN course_enrollments e
                  ON e.course_id = s.course_id AND e.user_id = p.user_id
           WHERE p.session_id = $1
           ORDER BY p.joined_at, p.id""",
        session_id,
    )
    counted = await of_session(conn, session_id)
    by_user: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for row in rows:
        by_user.setdefault(row["user_id"], []).append(row)
    lines: list[AttendanceLine] = []
    for user_id, joins in by_user.items():
        intervals = [(r["joined_at"], r["left_at"] or r["ended_at"] or now) for r in joins]
        lefts = [r["left_at"] for r in joins if r["left_at"] is not None]
        lines.append(
            AttendanceLine(
                user_id=user_id,
                display_name=joins[0]["display_name"],
                email=joins[0]["email"],
                course_role=joins[0]["course_role"],
                joins=len(joins),
                first_joined_at=joins[0]["joined_at"],
                last_left_at=max(lefts) if lefts else None,
                attended_seconds=merged_seconds(intervals),
                present_now=any(r["left_at"] is None for r in joins),
                participation=counted.get(user_id, Participation()),
            )
        )
    absent = await conn.fetch(
        """SELECT u.id, u.display_name, u.email
           FROM live_sessions s
           JOIN course_enrollments e ON e.course_id = s.course_id
                AND e.role = 'student' AND e.status = 'active'
           JOIN users u ON u.id = e.user_id
           WHERE s.id = $1
             AND NOT EXISTS (SELECT 1 FROM session_participants p
                             WHERE p.session_id = s.id AND p.user_id = e.user_id)
           ORDER BY u.display_name, u.id""",
        session_id,
    )
    lines.extend(
        AttendanceLine(
            r["id"],
            r["display_name"],
            r["email"],
            "student",
            0,
            None,
            None,
            0,
            False,
            counted.get(r["id"], Participation()),
        )
        for r in absent
    )
    return lines
