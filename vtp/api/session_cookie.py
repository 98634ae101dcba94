"""Browser sessions keep the refresh token in an HttpOnly cookie, not in page storage.

A browser client marks its login, register, refresh and password-change requests with
the header ``X-VTP-Session: cookie``. The server then sets the refresh token as the
cookie ``vtp_refresh`` (HttpOnly, SameSite=Strict, Path=/api/v1/auth/refresh, Secure on
TLS or behind an https VTP_PUBLIC_URL) and leaves it out of the JSON body, so script on
the page never sees it. `POST /api/v1/auth/refresh` with an empty body reads the cookie,
and requires the same header: a cross-site form or `fetch` cannot add a custom header
without a CORS preflight VTP never grants, so the header is the CSRF check.

API clients that are not browsers omit the header and keep the refresh token from the
JSON body, sending it back as ``{"refresh_token": ...}``.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web

from vtp.api.endpoint import reply
from vtp.api.errors import ApiError
from vtp.api.users import UserOut, user_out
from vtp.api.validation import Out, may_be_absent
from vtp.appkeys import CONFIG
from vtp.auth.tokens import TokenPair
from vtp.db.models import User

COOKIE = "vtp_refresh"
COOKIE_PATH = "/api/v1/auth/refresh"
HEADER = "X-VTP-Session"
HEADER_VALUE = "cookie"


def wants_cookie(request: web.Request) -> bool:
    return request.headers.get(HEADER, "").strip().lower() == HEADER_VALUE


def cookie_token(request: web.Request) -> str | None:
    """The refresh token from the cookie; refuses a cookie sent without the CSRF header."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    if not wants_cookie(request):
        raise ApiError(
            403,
            "csrf_check_failed",
            f"a cookie refresh needs the header {HEADER}: {HEADER_VALUE}",
        )
    return token


def _secure(request: web.Request) -> bool:
    public_url = request.app[CONFIG].public_url or ""
    return request.secure or public_url.lower().startswith("https://")


class TokensOut(Out):
    user: UserOut = may_be_absent()  # type: ignore[valid-type]
    access_token: str
    # left out for a browser session, which gets it as the cookie
    refresh_token: str = may_be_absent()
    token_type: Literal["Bearer"]
    expires_in: int
    refresh_expires_in: int


def token_response(
    request: web.Request, tokens: TokenPair, user: User | None = None, *, status: int = 200
) -> web.Response:
    """Answer with a token pair (and the account, on sign-in): the refresh token in the
    cookie for a browser session, in the body otherwise."""
    body = tokens.to_json()
    if user is not None:
        body["user"] = user_out(user)
    cookie = wants_cookie(request)
    if cookie:
        del body["refresh_token"]
    response = reply(TokensOut.model_validate(body), status)
    if not cookie:
        return response
    response.set_cookie(
        COOKIE,
        tokens.refresh_token,
        max_age=tokens.refresh_expires_in,
        path=COOKIE_PATH,
        secure=_secure(request),
        httponly=True,
        samesite="Strict",
    )
    return response


def clear_cookie(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(
        COOKIE, path=COOKIE_PATH, secure=_secure(request), httponly=True, samesite="Strict"
    )
