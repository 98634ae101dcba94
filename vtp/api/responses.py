"""Response shapes of the teaching-domain API, for the OpenAPI document and for tests
that check every JSON answer against them (unknown fields are refused, so a handler
that starts returning something new must say so here).

Row-shaped responses are derived from the row models of `vtp.db.models`, so a new
column shows up in both.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model

from vtp.db import models

H = TypeVar("H", bound=Callable[..., object])
_RETURNS = "__vtp_returns__"


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _absent(schema: dict[str, Any]) -> None:
    # "may be left out", not "may be null": no `default: null` in the schema.
    schema.pop("default", None)


def derive(
    name: str,
    row: type[models.Row],
    *,
    optional: tuple[str, ...] = (),
    replace: dict[str, Any] | None = None,
    add: dict[str, Any] | None = None,
) -> type[Out]:
    """An output model with the row's fields; `optional` ones may be left out (hidden
    from some callers), `replace` changes a field's type, `add` adds fields."""
    fields: dict[str, Any] = {}
    for field_name, info in row.model_fields.items():
        annotation = (replace or {}).get(field_name, info.annotation)
        fields[field_name] = (
            (annotation, Field(default=None, json_schema_extra=_absent))
            if field_name in optional
            else (annotation, ...)
        )
    fields.update(add or {})
    model: type[Out] = create_model(name, __base__=Out, **fields)
    return model


class FileOut(Out):
    id: str
    name: str
    size: int
    content_type: str
    sha256: str


class UserBrief(Out):
    id: uuid.UUID
    display_name: str
    email: str | None = None


UserOut = derive("UserOut", models.User)

CourseRoleName = Literal["teacher", "ta", "student", "observer"]

CourseOut = derive(
    "CourseOut",
    models.Course,
    optional=("enrollment_code",),
    add={"my_role": (CourseRoleName | None, ...)},
)
EnrollmentOut = derive(
    "EnrollmentOut", models.CourseEnrollment, add={"user": (UserBrief | None, None)}
)
SessionOut = derive("SessionOut", models.LiveSession, optional=("room_name",))
AssignmentOut = derive("AssignmentOut", models.Assignment, replace={"points_possible": float})
SubmissionOut = derive(
    "SubmissionOut",
    models.Submission,
    replace={"files": list[FileOut], "score": float | None},
    add={"student_name": (str | None, None)},
)
LessonOut = derive("LessonOut", models.Lesson, replace={"attachments": list[FileOut]})
MessageOut = derive(
    "MessageOut",
    models.Chat,
    replace={"body": str | None},
    add={"author_name": (str | None, ...)},
)
RecordingOut = derive(
    "RecordingOut",
    models.Recording,
    optional=("object_key", "error"),
    add={"course_id": (uuid.UUID, ...), "session_title": (str, ...)},
)


class JoinOut(Out):
    course: CourseOut  # type: ignore[valid-type]
    enrollment: EnrollmentOut  # type: ignore[valid-type]


class EnrollmentCodeOut(Out):
    enrollment_code: str


class JoinTicketOut(Out):
    session_id: uuid.UUID
    room_name: str
    role: Literal["presenter", "viewer"]
    may_publish: bool


class AttendanceLineOut(Out):
    user_id: uuid.UUID
    display_name: str
    email: str
    course_role: CourseRoleName | None
    joins: int
    first_joined_at: datetime | None
    last_left_at: datetime | None
    attended_seconds: int
    present_now: bool
    talk_seconds: int
    turns: int
    hands_raised: int
    chat_messages: int


class GradeCell(Out):
    score: float | None
    status: Literal["graded", "returned"]
    attempt: int
    is_late: bool


class GradebookAssignment(Out):
    id: uuid.UUID
    title: str
    points_possible: float
    status: Literal["draft", "published"]
    due_at: datetime | None


class GradebookRow(Out):
    user_id: uuid.UUID
    display_name: str
    email: str
    grades: dict[str, GradeCell]
    total: float


class GradebookOut(Out):
    assignments: list[GradebookAssignment]
    points_possible_total: float
    students: list[GradebookRow]


class MyGradesOut(Out):
    assignments: list[GradebookAssignment]
    points_possible_total: float
    grades: dict[str, GradeCell]
    total: float


class BulkGradeOut(Out):
    items: list[SubmissionOut]  # type: ignore[valid-type]


def page_of(item: type[BaseModel]) -> type[Out]:
    """The list envelope around `item`."""
    model: type[Out] = create_model(
        f"{item.__name__}Page",
        __base__=Out,
        items=(list[item], ...),  # type: ignore[valid-type]
        next_cursor=(str | None, Field(...)),
    )
    return model


def returns(model: type[BaseModel], *, many: bool = False) -> Callable[[H], H]:
    """Declare a handler's JSON answer (`many`: the paginated list envelope of it)."""
    shape = page_of(model) if many else model

    def mark(handler: H) -> H:
        setattr(handler, _RETURNS, shape)
        return handler

    return mark


def returns_of(handler: object) -> type[BaseModel] | None:
    value = getattr(handler, _RETURNS, None)
    return value if isinstance(value, type) and issubclass(value, BaseModel) else None
