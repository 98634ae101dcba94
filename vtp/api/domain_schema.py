"""Base classes of the teaching-domain request schemas (bodies and query strings).

On top of `Strict` (unknown fields refused) they refuse NUL characters in any text:
PostgreSQL cannot store them, so they are a 400 naming the field rather than a 500.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from vtp.api.schemas import Strict


def _no_nul(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("may not contain NUL characters")
    if isinstance(value, list):
        for item in value:
            _no_nul(item)
    return value


class Body(Strict):
    @field_validator("*", mode="after")
    @classmethod
    def _text_without_nul(cls, value: Any) -> Any:
        return _no_nul(value)


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _text_without_nul(cls, value: Any) -> Any:
        return _no_nul(value)
