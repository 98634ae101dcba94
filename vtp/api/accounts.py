"""Account security: change password, disable an account, one-time reset links.

* ``POST /api/v1/users/me/password``: the caller, with their current password; every
  token the user holds stops working (other browsers, API clients, open sockets) and the
  answer carries a fresh pair for this client.
* ``PATCH /api/v1/users/{id}/active``: an admin disables (or re-enables) an account; a
  disabled account cannot sign in or refresh, and its tokens are revoked at once.
* ``POST /api/v1/users/{id}/password-reset``: an admin issues a one-time reset link
  (works without e-mail, e.g. in development). ``POST /api/v1/auth/password-reset/request``:
  a user asks for the link by e-mail, when VTP_SMTP_HOST is set. ``POST
  /api/v1/auth/password-reset``: the link's token and a new password. Tokens are kept as
  hashes, expire after VTP_PASSWORD_RESET_TTL_S and work once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime

from aiohttp import web
from pydantic import Field

from vtp.api.access import authenticated, principal_of, public, require_roles
from vtp.api.endpoint import ReadBody, endpoint
from vtp.api.errors import ApiError, conflict, not_found, unauthorized
from vtp.api.session_cookie import TokensOut, token_response
from vtp.api.users import UserOut, user_out
from vtp.api.validation import Body, Out, path_uuid
from vtp.appkeys import CONFIG, DB, HASHER, REDIS, TOKENS
from vtp.auth.passwords import PasswordPolicyError, check_password_policy
from vtp.auth.ratelimit import RateLimiter
from vtp.auth.tokens import TokenService
from vtp.db import password_resets, users
from vtp.forwarded import client_address
from vtp.mail import MAILER

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


# --- requests and answers --------------------------------------------------------------
class PasswordChangeRequest(Body):
    current_password: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=1, max_length=200)


class ActiveChangeRequest(Body):
    is_active: bool


class ResetByEmailRequest(Body):
    email: str = Field(min_length=1, max_length=254)


class PasswordResetRequest(Body):
    token: str = Field(min_length=16, max_length=200)
    new_password: str = Field(min_length=1, max_length=200)


class ResetLinkOut(Out):
    reset_url: str
    expires_at: datetime


class NoticeOut(Out):
    message: str


# E-mailed links per account per hour: more are not sent (and nobody is told).
_EMAILS_PER_ACCOUNT = 3
_EMAIL_WINDOW_S = 3600


def _policy(request: web.Request, password: str, email: str, field: str) -> None:
    try:
        check_password_policy(
            password, email=email, min_length=request.app[CONFIG].password_min_length
        )
    except PasswordPolicyError as exc:
        raise ApiError(
            422, "weak_password", str(exc), [{"field": field, "message": str(exc)}]
        ) from exc


async def revoke_all_tokens(service: TokenService, user_id: uuid.UUID) -> None:
    """Revoke every token issued to the user until now. Tokens are refused when issued
    at or before the revocation's millisecond, so this returns a few milliseconds later:
    a pair issued next is valid."""
    await service.revoke_user_tokens(user_id)
    await asyncio.sleep(0.003)


def reset_url(base: str, token: str) -> str:
    # In the fragment: browsers do not send it to the server, so it is in no access log.
    return f"{base.rstrip('/')}/reset-password#token={token}"


def _reset_link(request: web.Request, token: str) -> str:
    return reset_url(request.app[CONFIG].public_url or f"{request.scheme}://{request.host}", token)


@routes.post("/api/v1/users/me/password")
@authenticated
@endpoint(body=PasswordChangeRequest, returns=TokensOut, errors=(403, 422, 429))
async def change_password(
    request: web.Request, read_body: ReadBody[PasswordChangeRequest]
) -> web.Response:
    """Change the caller's password (the current one is required).

    Every token the user holds is revoked, in every browser and client; the answer has
    a fresh pair for this one (a browser session gets the refresh token as its cookie)."""
    principal = principal_of(request)
    body = await read_body()
    app = request.app
    user = await users.get_user(app[DB], principal.user_id)
    if user is None or not user.is_active:
        raise unauthorized("account_disabled", "this account no longer exists or is disabled")
    limiter = RateLimiter(app[REDIS], "password-change")
    config = app[CONFIG]
    verdict = await limiter.peek(str(user.id), limit=config.login_max_attempts)
    if not verdict.allowed:
        raise ApiError(
            429,
            "rate_limited",
            f"too many wrong passwords; try again in {verdict.retry_after_s} s",
            {"retry_after_s": verdict.retry_after_s},
            headers={"Retry-After": str(verdict.retry_after_s)},
        )
    current_hash = await users.get_password_hash(app[DB], user.id)
    if not await app[HASHER].verify(body.current_password, current_hash):
        await limiter.hit(
            str(user.id), limit=config.login_max_attempts, window_s=config.login_window_s
        )
        raise ApiError(
            403,
            "wrong_password",
            "the current password is wrong",
            [{"field": "current_password", "message": "wrong password"}],
        )
    _policy(request, body.new_password, user.email, "new_password")
    await users.set_password(app[DB], user.id, await app[HASHER].hash(body.new_password))
    await limiter.reset(str(user.id))
    service = app[TOKENS]
    await revoke_all_tokens(service, user.id)
    log.info("password changed", extra={"user_id": str(user.id)})
    return token_response(request, service.issue(user.id, user.role), user)


@routes.patch("/api/v1/users/{user_id}/active")
@require_roles("admin")
@endpoint(body=ActiveChangeRequest, returns=UserOut, errors=(404, 409))
async def set_active(request: web.Request, read_body: ReadBody[ActiveChangeRequest]) -> Out:
    """Disable (`{"is_active": false}`) or re-enable an account.

    A disabled account cannot sign in or refresh, and every token it holds is revoked
    at once (its open sockets close)."""
    user_id = path_uuid(request, "user_id")
    body = await read_body()
    admin = principal_of(request)
    if user_id == admin.user_id and not body.is_active:
        raise conflict("self_disable_guard", "an admin cannot disable their own account")
    user = await users.set_active(request.app[DB], user_id, body.is_active)
    if user is None:
        raise not_found("no such user")
    if not body.is_active:
        await request.app[TOKENS].revoke_user_tokens(user_id)
    log.info(
        "account %s",
        "enabled" if body.is_active else "disabled",
        extra={"user_id": str(user_id), "by": str(admin.user_id)},
    )
    return user_out(user)


@routes.post("/api/v1/users/{user_id}/password-reset")
@require_roles("admin")
@endpoint(returns=ResetLinkOut, status=201, errors=(400, 404, 409))
async def issue_reset_link(request: web.Request) -> Out:
    """Issue a one-time password-reset link for a user (no e-mail needed).

    Hand the link to the user; it works once, until `expires_at`."""
    user_id = path_uuid(request, "user_id")
    user = await users.get_user(request.app[DB], user_id)
    if user is None:
        raise not_found("no such user")
    if not user.is_active:
        raise conflict("account_disabled", "enable the account before resetting its password")
    admin = principal_of(request)
    token, expires_at = await password_resets.issue(
        request.app[DB],
        user_id,
        ttl_s=request.app[CONFIG].password_reset_ttl_s,
        created_by=admin.user_id,
    )
    log.info("reset link issued", extra={"user_id": str(user_id), "by": str(admin.user_id)})
    return ResetLinkOut(reset_url=_reset_link(request, token), expires_at=expires_at)


@routes.post("/api/v1/auth/password-reset/request")
@public
@endpoint(body=ResetByEmailRequest, returns=NoticeOut, status=202, errors=(429, 503))
async def request_reset_email(
    request: web.Request, read_body: ReadBody[ResetByEmailRequest]
) -> Out:
    """E-mail a one-time reset link to an account's address (needs VTP_SMTP_HOST).

    The answer is the same whether or not the address has an account."""
    app = request.app
    config = app[CONFIG]
    mailer = app[MAILER]
    if not mailer.configured:
        raise ApiError(
            503,
            "email_not_configured",
            "this server sends no e-mail; ask an administrator for a reset link",
        )
    body = await read_body()
    by_address = await RateLimiter(app[REDIS], "reset-address").hit(
        client_address(request), limit=config.login_ip_max_attempts, window_s=config.login_window_s
    )
    if not by_address.allowed:
        raise ApiError(
            429,
            "rate_limited",
            f"too many reset requests; try again in {by_address.retry_after_s} s",
            {"retry_after_s": by_address.retry_after_s},
            headers={"Retry-After": str(by_address.retry_after_s)},
        )
    account = body.email.strip().casefold()
    creds = await users.get_credentials(app[DB], account)
    per_account = RateLimiter(app[REDIS], "reset-account")
    if creds is not None and creds.user.is_active:
        verdict = await per_account.hit(
            account, limit=_EMAILS_PER_ACCOUNT, window_s=_EMAIL_WINDOW_S
        )
        if verdict.allowed:
            token, _ = await password_resets.issue(
                app[DB], creds.user.id, ttl_s=config.password_reset_ttl_s, created_by=None
            )
            minutes = max(1, config.password_reset_ttl_s // 60)
            mailer.send_later(
                creds.user.email,
                "Reset your VTP password",
                f"Hello {creds.user.display_name},\n\n"
                f"someone (we hope you) asked to reset your VTP password. Open this link "
                f"within {minutes} minutes to choose a new one:\n\n"
                f"{_reset_link(request, token)}\n\n"
                "If you did not ask for it, ignore this message: your password stays as it is.\n",
            )
    return NoticeOut(message="if an account has this address, a reset link is on its way")


@routes.post("/api/v1/auth/password-reset")
@public
@endpoint(body=PasswordResetRequest, status=204, errors=(422,))
async def reset_password(
    request: web.Request, read_body: ReadBody[PasswordResetRequest]
) -> web.Response:
    """Set a new password with a reset link's token (once; every session is signed out)."""
    app = request.app
    body = await read_body()
    invalid = ApiError(
        400,
        "invalid_reset_token",
        "this reset link is not valid: it was used already, has expired, or is wrong",
    )
    user_id = await password_resets.holder(app[DB], body.token)
    user = await users.get_user(app[DB], user_id) if user_id is not None else None
    if user is None or not user.is_active:
        raise invalid
    _policy(request, body.new_password, user.email, "new_password")
    password_hash = await app[HASHER].hash(body.new_password)
    async with app[DB].acquire() as conn, conn.transaction():
        if await password_resets.spend(conn, body.token) != user.id:
            raise invalid  # used meanwhile
        await users.set_password(conn, user.id, password_hash)
    await app[TOKENS].revoke_user_tokens(user.id)
    log.info("password reset", extra={"user_id": str(user.id)})
    return web.Response(status=204)
