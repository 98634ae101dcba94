"""The event envelope (schema version 1): what every entry of the event stream and every
webhook body holds. docs/events.md describes each type's ``data``.

``id`` is unique per event and stays the same on every redelivery, so consumers
deduplicate on it; ``version`` changes only when a field changes meaning or goes away
(new fields and new types may appear at any time within a version).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

SCHEMA_VERSION = 1

EventType = Literal[
    "session.scheduled",
    "session.started",
    "session.ended",
    "session.cancelled",
    "session.summary",
    "participant.joined",
    "participant.left",
    "participant.hand_raised",
    "participant.muted",
    "participant.unmuted",
    "publication.started",
    "publication.stopped",
    "recording.started",
    "recording.stopped",
    "recording.available",
    "recording.failed",
    "chat.message",
    "submission.submitted",
    "submission.graded",
    "submission.returned",
    "enrollment.changed",
]
EVENT_TYPES: frozenset[str] = frozenset(EventType.__args__)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: str
    version: int
    occurred_at: datetime
    course_id: uuid.UUID | None
    session_id: uuid.UUID | None
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "version": self.version,
            "occurred_at": self.occurred_at.isoformat(),
            "course_id": str(self.course_id) if self.course_id else None,
            "session_id": str(self.session_id) if self.session_id else None,
            "data": self.data,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), default=str)

    @classmethod
    def loads(cls, text: str | bytes) -> Event:
        raw = json.loads(text)
        return cls(
            id=str(raw["id"]),
            type=str(raw["type"]),
            version=int(raw["version"]),
            occurred_at=datetime.fromisoformat(raw["occurred_at"]),
            course_id=uuid.UUID(raw["course_id"]) if raw.get("course_id") else None,
            session_id=uuid.UUID(raw["session_id"]) if raw.get("session_id") else None,
            data=dict(raw.get("data") or {}),
        )


def new_event(
    type: EventType,
    *,
    course_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    **data: Any,
) -> Event:
    return Event(
        id=f"evt_{uuid.uuid4().hex}",
        type=type,
        version=SCHEMA_VERSION,
        occurred_at=datetime.now(UTC),
        course_id=course_id,
        session_id=session_id,
        data={k: _plain(v) for k, v in data.items()},
    )


def _plain(value: Any) -> Any:
    """UUIDs and datetimes as JSON strings (data values come straight from rows)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
