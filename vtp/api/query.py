"""Query-string parameters read into strict schemas, and (created_at, id) keyset cursors.

Every list route takes `limit` (1..100) and an opaque `cursor`; its answer is the
envelope ``{"items": [...], "next_cursor": str | null}``.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from vtp.api.domain_schema import Query
from vtp.api.errors import ApiError, validation_details

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

MAX_LIMIT = 100


class ListQuery(Query):
    """The paging parameters every list route accepts; subclass it to add filters."""

    limit: int = Field(default=50, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, min_length=1, max_length=200)


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(
        400,
        "validation_error",
        "query parameters are invalid",
        [{"field": field, "message": message}],
    )


def parse_query(request: web.Request, model: type[M]) -> M:
    data: dict[str, str] = {}
    for key in set(request.query.keys()):
        values = request.query.getall(key)
        if len(values) > 1:
            raise _invalid(key, "given more than once")
        data[key] = values[0]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(
            400, "validation_error", "query parameters are invalid", validation_details(exc)
        ) from exc


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
        raise _invalid("cursor", "not a cursor returned by this list") from exc


def _position(row: Any) -> tuple[datetime, uuid.UUID]:
    """Where a row stands in the (created_at, id) order: from a record or a model."""
    if isinstance(row, BaseModel):
        return row.created_at, row.id  # type: ignore[attr-defined]
    return row["created_at"], row["id"]


def page(rows: Sequence[T], limit: int, render: Callable[[T], dict[str, Any]]) -> dict[str, Any]:
    """Rows fetched with LIMIT limit+1, in (created_at, id) order -> the list envelope."""
    more = len(rows) > limit
    shown = rows[:limit]
    next_cursor = encode_cursor(*_position(shown[-1])) if more and shown else None
    return {"items": [render(r) for r in shown], "next_cursor": next_cursor}
