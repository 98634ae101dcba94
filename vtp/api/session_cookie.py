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

from typing import Any

from aiohttp import web

from vtp.api.errors import ApiError
from vtp.appkeys import CONFIG
from vtp.auth.tokens import TokenPair

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


def token_response(
    request: web.Request,
    tokens: TokenPair,
    extra: dict[str, Any] | None = None,
    *,
    status: int = 200,
) -> web.Response:
    """Answer with a token pair: the refresh token in the cookie for a browser session,
    in the body otherwise."""
    body = {**(extra or {}), **tokens.to_json()}
    if not wants_cookie(request):
        return web.json_response(body, status=status)
    del body["refresh_token"]
    response = web.json_response(body, status=status)
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
