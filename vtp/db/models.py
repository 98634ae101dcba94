"""Typed rows of VTP's tables, serialisable to JSON.

A `User` never carries the password hash: the hash is read only by the login query,
into `UserCredentials`, which is not a pydantic model and so cannot be serialised by
accident.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Self

import asyncpg
from pydantic import BaseModel, ConfigDict

Role = Literal["student", "teacher", "admin"]
ROLES: tuple[Role, ...] = ("student", "teacher", "admin")


class Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def from_record(cls, record: asyncpg.Record | dict[str, Any]) -> Self:
        return cls.model_validate(dict(record))

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class User(Row):
    id: uuid.UUID
    email: str
    display_name: str
    role: Role
    is_active: bool
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class UserCredentials:
    user: User
    password_hash: str

    def __repr__(self) -> str:  # keep the hash out of logs and tracebacks
        return f"UserCredentials(user={self.user.id})"


class Course(Row):
    id: uuid.UUID
    code: str
    title: str
    description: str
    owner_id: uuid.UUID
    status: Literal["draft", "active", "archived"]
    enrollment_code: str | None
    created_at: datetime
    updated_at: datetime


class CourseEnrollment(Row):
    id: uuid.UUID
    course_id: uuid.UUID
    user_id: uuid.UUID
    role: Literal["student", "teacher", "ta", "observer"]
    # dropped: left by themself; removed: unenrolled by a teacher; requested: removed,
    # then asked to come back with the enrolment code (a teacher decides). 004_*.sql
    status: Literal["active", "dropped", "removed", "requested"]
    created_at: datetime
    updated_at: datetime


class Lesson(Row):
    id: uuid.UUID
    course_id: uuid.UUID
    position: int
    title: str
    content_md: str
    status: Literal["draft", "published"]
    published_at: datetime | None
    attachments: list[dict[str, Any]]  # added by 002_domain_api
    created_at: datetime
    updated_at: datetime


class LiveSession(Row):
    id: uuid.UUID
    course_id: uuid.UUID
    lesson_id: uuid.UUID | None
    host_id: uuid.UUID
    title: str
    status: Literal["scheduled", "live", "ended", "cancelled"]
    auto_record: bool
    scheduled_start: datetime
    scheduled_end: datetime
    started_at: datetime | None
    ended_at: datetime | None
    room_name: str
    students_may_publish: bool  # added by 002_domain_api
    created_at: datetime
    updated_at: datetime


class SessionParticipant(Row):
    id: uuid.UUID
    session_id: uuid.UUID
    user_id: uuid.UUID
    role: Literal["presenter", "viewer"]
    joined_at: datetime
    left_at: datetime | None
    created_at: datetime
    updated_at: datetime


# Why a recording ended; "cut": the process died while recording (``cut_at`` says when
# its files end).
EndedReason = Literal["stopped", "session_ended", "max_length", "server_stopping", "cut"]


class Recording(Row):
    id: uuid.UUID
    session_id: uuid.UUID
    started_by: uuid.UUID | None
    status: Literal["recording", "uploading", "available", "failed"]
    object_key: str | None
    size_bytes: int | None
    duration_ms: int | None
    sha256: str | None
    error: str | None
    started_at: datetime
    ended_at: datetime | None
    ended_reason: EndedReason | None
    cut_at: datetime | None
    created_at: datetime
    updated_at: datetime


class Assignment(Row):
    id: uuid.UUID
    course_id: uuid.UUID
    lesson_id: uuid.UUID | None
    created_by: uuid.UUID | None
    title: str
    instructions_md: str
    points_possible: Decimal
    status: Literal["draft", "published"]
    unlock_at: datetime | None
    due_at: datetime | None
    lock_at: datetime | None
    allowed_attempts: int | None
    allowed_file_types: list[str]
    max_file_bytes: int
    created_at: datetime
    updated_at: datetime


class Submission(Row):
    id: uuid.UUID
    assignment_id: uuid.UUID
    student_id: uuid.UUID
    attempt: int
    status: Literal["draft", "submitted", "graded", "returned"]
    body_text: str
    files: list[dict[str, Any]]
    submitted_at: datetime | None
    is_late: bool
    score: Decimal | None
    feedback: str | None
    graded_by: uuid.UUID | None
    graded_at: datetime | None
    created_at: datetime
    updated_at: datetime


class Chat(Row):
    id: uuid.UUID
    course_id: uuid.UUID
    session_id: uuid.UUID | None
    author_id: uuid.UUID | None
    body: str
    edited_at: datetime | None
    deleted_at: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookEndpoint(Row):
    id: uuid.UUID
    url: str
    secret_sealed: str | None  # the signing secret, encrypted (vtp.events.secret_box)
    # A plain-text secret from before migration 008, until the app's start seals it.
    secret: str | None = None
    event_types: list[str]
    description: str
    enabled: bool
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        # the secret is shown once, when it is made (creation, rotation)
        return self.model_dump(mode="json", exclude={"secret_sealed", "secret"})


class WebhookDelivery(Row):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: str
    event_type: str
    attempt: int
    outcome: Literal["delivered", "failed", "dead"]
    status_code: int | None
    error: str | None
    duration_ms: int
    payload: dict[str, Any] | None
    created_at: datetime


class SessionParticipation(Row):
    session_id: uuid.UUID
    user_id: uuid.UUID
    talk_ms: int
    turns: int
    hands_raised: int


# Table name -> model, so a test can check every table has a model matching its columns.
MODELS: dict[str, type[Row]] = {
    "users": User,
    "courses": Course,
    "course_enrollments": CourseEnrollment,
    "lessons": Lesson,
    "live_sessions": LiveSession,
    "session_participants": SessionParticipant,
    "recordings": Recording,
    "assignments": Assignment,
    "submissions": Submission,
    "chats": Chat,
    "webhook_endpoints": WebhookEndpoint,
    "webhook_deliveries": WebhookDelivery,
    "session_participation": SessionParticipation,
}
