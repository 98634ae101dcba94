"""What the API accepts and answers: request schemas read from the body, the query
string and the path, and response models that answers are serialised through.

* `Body` and `Query` are the bases of every request schema: unknown fields are refused,
  and so are NUL characters in text (PostgreSQL cannot store them: a 400 naming the
  field, not a 500).
* `Out` is the base of every response model; `derive` makes one from a row model of
  `vtp.db.models`, so a new column shows up in both. Answers are dumped with
  ``exclude_unset``: a field a caller may not see is left unset, not set to null.
* Lists take `limit` (1..100) and an opaque `cursor` (`ListQuery`) and answer the
  envelope ``{"items": [...], "next_cursor": str | null}`` (`page_of`, `ListQuery.page`),
  with (created_at, id) keyset cursors (`ListQuery.position`).

Handlers do not call the readers here themselves: they declare what they take and
answer with `vtp.api.endpoint.endpoint`, which reads and serialises through these.
"""

from __future__ import annotations

import base64
import binascii
import functools
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from vtp.api.errors import ApiError, field_error, validation_details
from vtp.db import models
from vtp.jsonlimits import TooDeep, loads

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

MAX_LIMIT = 100


# --- requests --------------------------------------------------------------------------
def no_nul(value: Any) -> Any:
    """PostgreSQL cannot store NUL in text: refuse it as a 400 naming the field, not a 500."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("may not contain NUL characters")
    if isinstance(value, list):
        for item in value:
            no_nul(item)
    return value


class Body(BaseModel):
    """A JSON request body."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("*", mode="after")
    @classmethod
    def _text_without_nul(cls, value: Any) -> Any:
        return no_nul(value)


class Query(BaseModel):
    """Query-string parameters (each given at most once)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _text_without_nul(cls, value: Any) -> Any:
        return no_nul(value)


class ListQuery(Query):
    """The paging parameters every list route accepts; subclass it to add filters."""

    limit: int = Field(default=50, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, min_length=1, max_length=200)

    def position(self) -> tuple[datetime, uuid.UUID] | None:
        """The row this page starts beyond (None: the first page); a 400 for a cursor
        this list did not give."""
        return decode_cursor(self.cursor)

    def page(self, rows: Sequence[T], render: Callable[[T], Any]) -> Page:
        """Rows fetched with LIMIT limit+1 -> this page (see `page`)."""
        return page(rows, self.limit, render)


def refuse_nulls(changes: dict[str, Any], fields: Iterable[str]) -> None:
    """In a PATCH, null means "clear"; these fields cannot be cleared."""
    for key in fields:
        if key in changes and changes[key] is None:
            raise field_error(key, "may not be null")


async def read_body(request: web.Request, model: type[M], *, optional: bool = False) -> M:
    raw = await request.read()  # aiohttp enforces client_max_size here (413)
    if not raw.strip():
        if optional:
            return model()
        raise ApiError(400, "empty_body", "request body must be a JSON object")
    content_type = request.content_type
    acceptable = content_type in ("application/json", "") or content_type.endswith("+json")
    if not acceptable:
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        data = loads(raw)
    except TooDeep as exc:
        raise ApiError(400, "invalid_json", f"body is not acceptable JSON: {exc}") from exc
    except ValueError as exc:  # UnicodeDecodeError, json.JSONDecodeError
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON object")
    return _validated(model, data, "request body is invalid")


def _invalid_query(field: str, message: str) -> ApiError:
    return ApiError(
        400,
        "validation_error",
        "query parameters are invalid",
        [{"field": field, "message": message}],
    )


def read_query(request: web.Request, model: type[M]) -> M:
    data: dict[str, str] = {}
    for key in set(request.query.keys()):
        values = request.query.getall(key)
        if len(values) > 1:
            raise _invalid_query(key, "given more than once")
        data[key] = values[0]
    return _validated(model, data, "query parameters are invalid")


def _validated(model: type[M], data: dict[str, Any], message: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "validation_error", message, validation_details(exc)) from exc


def path_uuid(request: web.Request, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError as exc:
        raise ApiError(
            400,
            "validation_error",
            f"{name} must be a UUID",
            [{"field": name, "message": "not a valid UUID"}],
        ) from exc


# --- paging ------------------------------------------------------------------------------
def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        stamp, _, row_id = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
        when = datetime.fromisoformat(stamp)
        if when.tzinfo is None:
            raise ValueError("naive timestamp")
        return when, uuid.UUID(row_id)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise _invalid_query("cursor", "not a cursor returned by this list") from exc


def _position(row: Any) -> tuple[datetime, uuid.UUID]:
    """Where a row stands in the (created_at, id) order: from a record or a model."""
    if isinstance(row, BaseModel):
        return row.created_at, row.id  # type: ignore[attr-defined]
    return row["created_at"], row["id"]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list, answered through the `page_of` model its route declares."""

    items: list[Any]
    next_cursor: str | None


def page(rows: Sequence[T], limit: int, render: Callable[[T], Any]) -> Page:
    """Rows fetched with LIMIT limit+1, in (created_at, id) order -> one page."""
    more = len(rows) > limit
    shown = rows[:limit]
    next_cursor = encode_cursor(*_position(shown[-1])) if more and shown else None
    return Page([render(r) for r in shown], next_cursor)


# --- responses ---------------------------------------------------------------------------
class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _absent(schema: dict[str, Any]) -> None:
    # "may be left out", not "may be null": no `default: null` in the schema.
    schema.pop("default", None)


def may_be_absent() -> Any:
    """A field an answer may leave out (left unset, it is not serialised)."""
    return Field(default=None, json_schema_extra=_absent)


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
            (annotation, may_be_absent()) if field_name in optional else (annotation, ...)
        )
    fields.update(add or {})
    model: type[Out] = create_model(name, __base__=Out, **fields)
    return model


@functools.cache
def page_of(item: type[BaseModel]) -> type[Out]:
    """The list envelope around `item` (one model per item model)."""
    model: type[Out] = create_model(
        f"{item.__name__}Page",
        __base__=Out,
        items=(list[item], ...),  # type: ignore[valid-type]
        next_cursor=(str | None, Field(...)),
    )
    return model


def shaped(model: type[M], row: BaseModel, *, hide: Iterable[str] = (), **more: Any) -> M:
    """`model` filled from a row model's fields (minus `hide`, plus `more`)."""
    data = dict(row.__dict__)
    for name in hide:
        del data[name]
    data.update(more)
    return model.model_validate(data)
