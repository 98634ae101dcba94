"""/api/v1/users: the caller's own account, and role changes by an admin."""

from __future__ import annotations

import logging
import uuid

from aiohttp import web

from vtp.api.access import authenticated, principal_of, require_roles
from vtp.api.body import read_json
from vtp.api.errors import ApiError, not_found, unauthorized
from vtp.api.schemas import RoleChangeRequest
from vtp.appkeys import DB, TOKENS
from vtp.db import users

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def path_uuid(request: web.Request, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError as exc:
        raise ApiError(
            400,
            "validation_error",
            f"{name} must be a UUID",
            [{"field": name, "message": "not a valid UUID"}],
        ) from exc


@routes.get("/api/v1/users/me")
@authenticated
async def me(request: web.Request) -> web.Response:
    user = await users.get_user(request.app[DB], principal_of(request).user_id)
    if user is None:
        raise unauthorized("account_disabled", "this account no longer exists")
    return web.json_response(user.to_json())


@routes.patch("/api/v1/users/{user_id}/role")
@require_roles("admin")
async def change_role(request: web.Request) -> web.Response:
    user_id = path_uuid(request, "user_id")
    body = await read_json(request, RoleChangeRequest)
    admin = principal_of(request)
    if user_id == admin.user_id and body.role != "admin":
        raise ApiError(409, "last_admin_guard", "an admin cannot remove their own admin role")
    user = await users.set_role(request.app[DB], user_id, body.role)
    if user is None:
        raise not_found("no such user")
    # Tokens carry the role: those issued before the change stop working now.
    await request.app[TOKENS].revoke_user_tokens(user_id, reason="site role changed")
    log.info(
        "role changed",
        extra={"user_id": str(user_id), "role": body.role, "by": str(admin.user_id)},
    )
    return web.json_response(user.to_json())
