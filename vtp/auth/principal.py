"""The authenticated caller of a request or a signalling connection."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from vtp.db.models import Role


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    role: Role
    token_id: str
    family_id: str
    expires_at: int

    def has_role(self, *roles: Role) -> bool:
        return self.role in roles
