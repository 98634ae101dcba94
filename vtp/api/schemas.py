"""Request bodies of the API, validated strictly (unknown fields are refused)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from vtp.db.models import Role


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class RegisterRequest(Strict):
    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=1, max_length=200)
    display_name: str = Field(min_length=1, max_length=120)


class LoginRequest(Strict):
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=200)


class RefreshRequest(Strict):
    refresh_token: str = Field(min_length=1, max_length=4096)


class RoleChangeRequest(Strict):
    role: Role
