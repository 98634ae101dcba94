"""/api/v1/auth: register, login, refresh, logout."""

from __future__ import annotations

import logging
import uuid

from aiohttp import web
from pydantic import EmailStr, Field

from vtp.api.access import authenticated, principal_of, public
from vtp.api.endpoint import ReadBody, endpoint
from vtp.api.errors import ApiError, conflict, unauthorized
from vtp.api.session_cookie import TokensOut, clear_cookie, cookie_token, token_response
from vtp.api.validation import Body
from vtp.appkeys import (
    CONFIG,
    DB,
    HASHER,
    LOGIN_BACKOFF,
    LOGIN_LIMIT_ADDRESS,
    REGISTER_LIMIT_ADDRESS,
    TOKENS,
)
from vtp.auth.passwords import PasswordPolicyError, check_password_policy
from vtp.auth.tokens import TokenError
from vtp.db import users
from vtp.forwarded import client_address

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


# --- requests --------------------------------------------------------------------------
class RegisterRequest(Body):
    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=1, max_length=200)
    display_name: str = Field(min_length=1, max_length=120)


class LoginRequest(Body):
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=200)


class RefreshRequest(Body):
    # Absent: a browser session's refresh token comes from its cookie.
    refresh_token: str | None = Field(default=None, min_length=1, max_length=4096)


def _too_many(retry_after: int, what: str, doing: str = "login attempts") -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        f"too many {doing} for this {what}; try again in {retry_after} s",
        {"retry_after_s": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


@routes.post("/api/v1/auth/register")
@public
@endpoint(body=RegisterRequest, returns=TokensOut, status=201, errors=(409, 422, 429))
async def register(request: web.Request, read_body: ReadBody[RegisterRequest]) -> web.Response:
    config = request.app[CONFIG]
    body = await read_body()
    # counted before the bcrypt hash, the cost an address must not multiply
    by_address = await request.app[REGISTER_LIMIT_ADDRESS].hit(
        client_address(request),
        limit=config.register_max_per_address,
        window_s=config.register_window_s,
    )
    if not by_address.allowed:
        raise _too_many(by_address.retry_after_s, "address", "registrations")
    try:
        check_password_policy(
            body.password, email=body.email, min_length=config.password_min_length
        )
    except PasswordPolicyError as exc:
        raise ApiError(
            422, "weak_password", str(exc), [{"field": "password", "message": str(exc)}]
        ) from exc
    password_hash = await request.app[HASHER].hash(body.password)
    try:
        user = await users.create_user(
            request.app[DB],
            email=body.email,
            display_name=body.display_name.strip() or body.email,
            password_hash=password_hash,
        )
    except users.EmailTaken as exc:
        raise conflict("email_taken", "an account with this e-mail already exists") from exc
    log.info("user registered", extra={"user_id": str(user.id)})
    tokens = request.app[TOKENS].issue(user.id, user.role)
    return token_response(request, tokens, user, status=201)


@routes.post("/api/v1/auth/login")
@public
@endpoint(body=LoginRequest, returns=TokensOut, errors=(401, 429))
async def login(request: web.Request, read_body: ReadBody[LoginRequest]) -> web.Response:
    config = request.app[CONFIG]
    body = await read_body()
    account = body.email.strip().casefold()
    by_address = await request.app[LOGIN_LIMIT_ADDRESS].hit(
        client_address(request),
        limit=config.login_ip_max_attempts,
        window_s=config.login_window_s,
    )
    if not by_address.allowed:
        raise _too_many(by_address.retry_after_s, "address")
    # Failures slow down this account *at this address* only: guesses from elsewhere
    # never lock the owner out of their account.
    backoff = request.app[LOGIN_BACKOFF]
    subject = f"{account}|{client_address(request)}"
    waiting = await backoff.check(subject)
    if not waiting.allowed:
        raise _too_many(waiting.retry_after_s, "account from this address")

    creds = await users.get_credentials(request.app[DB], account)
    ok = await request.app[HASHER].verify(body.password, creds.password_hash if creds else None)
    if not ok or creds is None or not creds.user.is_active:
        await backoff.failed(
            subject,
            free=config.login_max_attempts,
            base_s=config.login_delay_base_s,
            max_s=config.login_delay_max_s,
            window_s=config.login_window_s,
        )
        raise unauthorized("invalid_credentials", "e-mail or password is wrong")
    await backoff.reset(subject)
    await users.record_login(request.app[DB], creds.user.id)
    tokens = request.app[TOKENS].issue(creds.user.id, creds.user.role)
    log.info("user logged in", extra={"user_id": str(creds.user.id)})
    return token_response(request, tokens, creds.user)


@routes.post("/api/v1/auth/refresh")
@public
@endpoint(body=RefreshRequest, optional_body=True, returns=TokensOut, errors=(401, 403))
async def refresh(request: web.Request, read_body: ReadBody[RefreshRequest]) -> web.Response:
    """Trade a refresh token for a new pair (the old one is spent).

    API clients send `{"refresh_token": ...}`. A browser session sends an empty body, the
    `vtp_refresh` cookie and the header `X-VTP-Session: cookie` (its CSRF check; 403
    `csrf_check_failed` without it), and gets the new refresh token as the cookie."""
    body = await read_body()
    refresh_token = body.refresh_token or cookie_token(request)
    if refresh_token is None:
        raise unauthorized("not_authenticated", "send a refresh token or the session cookie")
    service = request.app[TOKENS]
    try:
        claims = await service.verify_refresh(refresh_token)
        await service.spend_refresh(claims)
    except TokenError as exc:
        raise unauthorized(exc.code, exc.message) from exc
    # The role is read again: a promotion shows up at the next refresh.
    user = await users.get_user(request.app[DB], _subject(claims))
    if user is None or not user.is_active:
        await service.revoke_family(
            claims["fam"], user_id=_subject(claims), reason="account disabled"
        )
        raise unauthorized("account_disabled", "this account no longer exists or is disabled")
    tokens = service.issue(user.id, user.role, family=claims["fam"])
    return token_response(request, tokens)


def _subject(claims: dict[str, object]) -> uuid.UUID:
    return uuid.UUID(str(claims["sub"]))


@routes.post("/api/v1/auth/logout")
@authenticated
@endpoint(status=204)
async def logout(request: web.Request) -> web.Response:
    principal = principal_of(request)
    service = request.app[TOKENS]
    # The family covers this login's refresh token (and any rotated successors); the
    # login's open sockets close (other logins of the user keep theirs).
    await service.revoke_token(principal.token_id, principal.expires_at)
    await service.revoke_family(principal.family_id, user_id=principal.user_id, reason="signed out")
    response = web.Response(status=204)
    clear_cookie(request, response)
    return response
