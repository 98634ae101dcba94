"""JWT access and refresh tokens, with revocation kept in Redis.

Every token carries a `jti` (its own id) and a `fam` (the login it descends from). A
refresh token is single-use: using it marks it spent and issues a new pair in the same
family. Presenting a spent refresh token means it was copied, so the whole family
(every access and refresh token of that login) is revoked. Revocation records live in
Redis until the tokens they name would have expired anyway.

Every revocation that names a user is also announced on :attr:`TokenService.authority`
(when the app set one), so that the user's open sockets re-check their token at once.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from redis.asyncio import Redis

from vtp.auth.authority import AuthorityBus, AuthorityChange
from vtp.auth.principal import Principal
from vtp.db.models import ROLES, Role

TokenType = Literal["access", "refresh"]
_ALGORITHM = "HS256"
_LEEWAY_S = 5


class TokenError(Exception):
    """The token is missing, malformed, expired or revoked."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RefreshReuseError(TokenError):
    pass


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    access_expires_in: int
    refresh_expires_in: int

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.access_expires_in,
            "refresh_expires_in": self.refresh_expires_in,
        }


def _key_revoked(jti: str) -> str:
    return f"vtp:auth:revoked:{jti}"


def _key_family(fam: str) -> str:
    return f"vtp:auth:family-revoked:{fam}"


def _key_spent(jti: str) -> str:
    return f"vtp:auth:refresh-spent:{jti}"


def _key_not_before(user_id: uuid.UUID) -> str:
    return f"vtp:auth:user-not-before:{user_id}"


def _principal(claims: dict[str, Any]) -> Principal:
    return Principal(
        user_id=uuid.UUID(claims["sub"]),
        role=claims["role"],
        token_id=claims["jti"],
        family_id=claims["fam"],
        expires_at=int(claims["exp"]),
    )


class TokenService:
    def __init__(
        self,
        redis: Redis,
        secret: str,
        *,
        issuer: str,
        access_ttl_s: int,
        refresh_ttl_s: int,
    ) -> None:
        self._redis = redis
        self._secret = secret
        self.issuer = issuer
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        # Where revocations are announced to open sockets (set by the app; None: nowhere).
        self.authority: AuthorityBus | None = None

    # --- issuing --------------------------------------------------------------------
    def _encode(self, typ: TokenType, user_id: uuid.UUID, role: Role, family: str, ttl: int) -> str:
        # iat keeps milliseconds (RFC 7519 allows a non-integer NumericDate) so that a
        # token issued right after a role change is told apart from one issued before.
        now = round(time.time(), 3)
        claims = {
            "iss": self.issuer,
            "sub": str(user_id),
            "role": role,
            "typ": typ,
            "jti": secrets.token_urlsafe(16),
            "fam": family,
            "iat": now,
            "exp": int(now) + ttl,
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def issue(self, user_id: uuid.UUID, role: Role, family: str | None = None) -> TokenPair:
        family = family or secrets.token_urlsafe(16)
        return TokenPair(
            access_token=self._encode("access", user_id, role, family, self.access_ttl_s),
            refresh_token=self._encode("refresh", user_id, role, family, self.refresh_ttl_s),
            access_expires_in=self.access_ttl_s,
            refresh_expires_in=self.refresh_ttl_s,
        )

    # --- checking -------------------------------------------------------------------
    def _decode(self, token: str, typ: TokenType, *, verify_exp: bool = True) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                issuer=self.issuer,
                leeway=_LEEWAY_S,
                options={
                    "require": ["exp", "iat", "sub", "jti", "typ", "fam"],
                    "verify_exp": verify_exp,
                },
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("token_expired", f"{typ} token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenError("token_invalid", f"{typ} token is invalid") from exc
        if claims.get("typ") != typ:
            raise TokenError("token_invalid", f"not an {typ} token")
        if claims.get("role") not in ROLES:
            raise TokenError("token_invalid", f"{typ} token has an unknown role")
        try:
            uuid.UUID(claims["sub"])
        except (ValueError, TypeError) as exc:
            raise TokenError("token_invalid", f"{typ} token has a bad subject") from exc
        return claims

    async def _check_revocation(self, claims: dict[str, Any], typ: TokenType) -> None:
        user_id = uuid.UUID(claims["sub"])
        revoked, family_revoked, not_before = await self._redis.mget(
            _key_revoked(claims["jti"]), _key_family(claims["fam"]), _key_not_before(user_id)
        )
        if revoked is not None or family_revoked is not None:
            raise TokenError("token_revoked", f"{typ} token has been revoked")
        if not_before is not None and float(claims["iat"]) <= float(not_before):
            # The user's role or password changed after this token was issued.
            raise TokenError("token_revoked", f"{typ} token is no longer valid; sign in again")

    async def verify_access(self, token: str) -> Principal:
        claims = self._decode(token, "access")
        await self._check_revocation(claims, "access")
        return _principal(claims)

    async def verify_unrevoked(self, token: str) -> Principal:
        """An access token that may have expired but was not revoked: for media sessions
        created over HTTP (REST transports, WHIP, WHEP), which cannot renew their token
        and so outlive its expiry, but not its revocation."""
        claims = self._decode(token, "access", verify_exp=False)
        await self._check_revocation(claims, "access")
        return _principal(claims)

    async def verify_refresh(self, token: str) -> dict[str, Any]:
        """Check a refresh token without spending it."""
        claims = self._decode(token, "refresh")
        await self._check_revocation(claims, "refresh")
        return claims

    async def spend_refresh(self, claims: dict[str, Any]) -> None:
        """Mark a refresh token used; reuse of a spent one revokes its whole family."""
        ttl = max(1, int(claims["exp"]) - int(time.time()) + _LEEWAY_S)
        first_use = await self._redis.set(_key_spent(claims["jti"]), b"1", ex=ttl, nx=True)
        if not first_use:
            await self.revoke_family(
                claims["fam"], user_id=uuid.UUID(claims["sub"]), reason="refresh token reused"
            )
            raise RefreshReuseError(
                "refresh_reused",
                "refresh token was already used; every session of this login has been signed out",
            )

    # --- revoking -------------------------------------------------------------------
    async def _announce(self, user_id: uuid.UUID | None, reason: str) -> None:
        if self.authority is not None:
            # Without a user, every socket re-checks its token: correct, but costly.
            await self.authority.publish(AuthorityChange(reason=reason, user_id=user_id))

    async def revoke_token(
        self, jti: str, expires_at: int, *, user_id: uuid.UUID | None = None
    ) -> None:
        """Revoke one token; with ``user_id``, that user's sockets re-check at once."""
        ttl = max(1, expires_at - int(time.time()) + _LEEWAY_S)
        await self._redis.set(_key_revoked(jti), b"1", ex=ttl)
        if user_id is not None:
            await self._announce(user_id, "token revoked")

    async def revoke_family(
        self, family: str, *, user_id: uuid.UUID | None = None, reason: str = "signed out"
    ) -> None:
        """Revoke every token of one login (pass its user: see :meth:`_announce`)."""
        # A family lives at most as long as its newest refresh token.
        await self._redis.set(_key_family(family), b"1", ex=self.refresh_ttl_s + _LEEWAY_S)
        await self._announce(user_id, reason)

    async def revoke_user_tokens(self, user_id: uuid.UUID, *, reason: str = "signed out") -> None:
        """Invalidate every token issued to a user before now (role or password change,
        account disabled); the user's open sockets close at once."""
        await self._redis.set(
            _key_not_before(user_id),
            repr(round(time.time(), 3)),
            ex=self.refresh_ttl_s + _LEEWAY_S,
        )
        await self._announce(user_id, reason)
