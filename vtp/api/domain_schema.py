"""Base classes of the teaching-domain request schemas (bodies and query strings).

On top of `Strict` (unknown fields refused) they refuse NUL characters in any text:
PostgreSQL cannot store them, so they are a 400 naming the field rather than a 500.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from vtp.api.errors import ApiError
from vtp.api.schemas import Strict, no_nul


class Body(Strict):
    """A domain request body (`Strict` already refuses NUL characters)."""


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _text_without_nul(cls, value: Any) -> Any:
        return no_nul(value)


def field_error(field: str, message: str) -> ApiError:
    """A 400 validation_error naming one body field (checks pydantic cannot make)."""
    return ApiError(
        400, "validation_error", "request body is invalid", [{"field": field, "message": message}]
    )


def refuse_nulls(changes: dict[str, Any], fields: Iterable[str]) -> None:
    """In a PATCH, null means "clear"; these fields cannot be cleared."""
    for key in fields:
        if key in changes and changes[key] is None:
            raise field_error(key, "may not be null")
