"""bcrypt hashing (off the event loop) and the server-side password policy."""

from __future__ import annotations

import asyncio

import bcrypt

# bcrypt only reads the first 72 bytes; accepting more would let two different
# passwords share a hash, so longer ones are refused with a clear message.
MAX_PASSWORD_BYTES = 72
_COMMON = frozenset(
    {
        "password",
        "password1",
        "password123",
        "123456789",
        "1234567890",
        "qwertyuiop",
        "iloveyou",
        "letmein123",
        "welcome123",
        "changeme",
        "administrator",
    }
)


class PasswordPolicyError(ValueError):
    pass


def check_password_policy(password: str, *, email: str, min_length: int) -> None:
    """Raise PasswordPolicyError with a message a person can act on."""
    if len(password) < min_length:
        raise PasswordPolicyError(f"password must be at least {min_length} characters long")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise PasswordPolicyError(f"password must be at most {MAX_PASSWORD_BYTES} bytes long")
    lowered = password.casefold()
    local_part = email.split("@", 1)[0].casefold()
    if lowered in (email.casefold(), local_part):
        raise PasswordPolicyError("password must not be your e-mail address")
    if lowered in _COMMON or len(set(password)) < 3:
        raise PasswordPolicyError("password is too easy to guess")


class PasswordHasher:
    def __init__(self, cost: int) -> None:
        self.cost = cost
        # Compared against when the account does not exist, so a wrong e-mail costs
        # the same time as a wrong password and does not reveal which accounts exist.
        self._dummy = bcrypt.hashpw(b"vtp-dummy-password", bcrypt.gensalt(cost))

    async def hash(self, password: str) -> str:
        salt = bcrypt.gensalt(self.cost)
        digest = await asyncio.to_thread(bcrypt.hashpw, password.encode("utf-8"), salt)
        return digest.decode("ascii")

    async def verify(self, password: str, password_hash: str | None) -> bool:
        candidate = password.encode("utf-8")[:MAX_PASSWORD_BYTES]
        stored = password_hash.encode("ascii") if password_hash else self._dummy
        ok = await asyncio.to_thread(bcrypt.checkpw, candidate, stored)
        return ok and password_hash is not None
