"""Request bodies of the API, validated strictly (unknown fields and NUL characters in
text are refused)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from vtp.db.models import Role


def no_nul(value: Any) -> Any:
    """PostgreSQL cannot store NUL in text: refuse it as a 400 naming the field, not a 500."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("may not contain NUL characters")
    if isinstance(value, list):
        for item in value:
            no_nul(item)
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("*", mode="after")
    @classmethod
    def _text_without_nul(cls, value: Any) -> Any:
        return no_nul(value)


class RegisterRequest(Strict):
    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=1, max_length=200)
    display_name: str = Field(min_length=1, max_length=120)


class LoginRequest(Strict):
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=200)


class RefreshRequest(Strict):
    # Absent: a browser session's refresh token comes from its cookie.
    refresh_token: str | None = Field(default=None, min_length=1, max_length=4096)


class ProfileChangeRequest(Strict):
    display_name: str = Field(min_length=1, max_length=120)

    @field_validator("display_name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a display name cannot be blank")
        return value.strip()


class RoleChangeRequest(Strict):
    role: Role


class PasswordChangeRequest(Strict):
    current_password: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=1, max_length=200)


class ActiveChangeRequest(Strict):
    is_active: bool


class ResetByEmailRequest(Strict):
    email: str = Field(min_length=1, max_length=254)


class PasswordResetRequest(Strict):
    token: str = Field(min_length=16, max_length=200)
    new_password: str = Field(min_length=1, max_length=200)
