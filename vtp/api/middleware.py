"""Request id, JSON errors and authentication, in that order around every handler."""

from __future__ import annotations

import logging
import re
import time
import uuid

from aiohttp import web

from vtp.api.access import PRINCIPAL_KEY, Handler, access_of
from vtp.api.dependencies import failed_dependency, unavailable
from vtp.api.errors import ApiError, error_response, forbidden, unauthorized
from vtp.appkeys import TOKENS
from vtp.auth.tokens import TokenError
from vtp.logs import request_id_var

log = logging.getLogger("vtp.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    503: "unavailable",
}


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-ID"] = request_id
        return response
    finally:
        log.info(
            "%s %s -> %s",
            request.method,
            request.path,
            status,
            extra={"duration_ms": round((time.perf_counter() - started) * 1000, 1)},
        )
        request_id_var.reset(token)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            message = f"request body is too large (limit {request.app._client_max_size} bytes)"
        else:
            message = exc.reason
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(
            exc.status, _HTTP_CODES.get(exc.status, "http_error"), message, headers=headers
        )
    except Exception as exc:
        dependency = failed_dependency(exc)
        if dependency is not None:
            log.warning(
                "%s is down: %s %s -> 503 (%s)",
                dependency,
                request.method,
                request.path,
                repr(exc),
            )
            down = unavailable(dependency)
            return error_response(down.status, down.code, down.message, down.details, down.headers)
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(
            500,
            "internal_error",
            "internal server error",
            {"request_id": request_id_var.get()},
        )


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    rule = access_of(handler)
    if rule is None:
        # Unmatched routes (404/405) reach here with aiohttp's own handler.
        return await handler(request)
    if rule.public:
        return await handler(request)
    token = bearer_token(request)
    if token is None:
        raise unauthorized("not_authenticated", "missing bearer token")
    try:
        principal = await request.app[TOKENS].verify_access(token)
    except TokenError as exc:
        raise unauthorized(exc.code, exc.message) from exc
    if rule.roles is not None and principal.role not in rule.roles:
        raise forbidden(f"this needs the role {' or '.join(sorted(rule.roles))}")
    request[PRINCIPAL_KEY] = principal
    return await handler(request)
