"""/api/v1/users: the caller's own account (read, display name); for admins, the list of
accounts (searchable, paginated) and site-role changes. Disabling an account and reset
links are in `vtp.api.accounts`."""

from __future__ import annotations

import logging
import uuid

from aiohttp import web
from pydantic import Field, field_validator

from vtp.api.access import authenticated, principal_of, require_roles
from vtp.api.endpoint import ReadBody, ReadQuery, endpoint
from vtp.api.errors import ApiError, not_found, unauthorized
from vtp.api.validation import Body, ListQuery, Out, Page, derive, path_uuid, shaped
from vtp.appkeys import DB, TOKENS
from vtp.db import models, users
from vtp.db.models import Role, User

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


# --- answers and requests --------------------------------------------------------------
class UserBrief(Out):
    id: uuid.UUID
    display_name: str
    email: str | None = None


UserOut = derive("UserOut", models.User)


def user_out(user: User) -> Out:
    return shaped(UserOut, user)


class ProfileChangeRequest(Body):
    display_name: str = Field(min_length=1, max_length=120)

    @field_validator("display_name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a display name cannot be blank")
        return value.strip()


class RoleChangeRequest(Body):
    role: Role


class UsersQuery(ListQuery):
    q: str | None = Field(default=None, min_length=1, max_length=200)
    role: Role | None = None
    active: bool | None = None


@routes.get("/api/v1/users")
@require_roles("admin")
@endpoint(query=UsersQuery, returns=UserOut, many=True)
async def list_users(request: web.Request, read_query: ReadQuery[UsersQuery]) -> Page:
    """Every account, oldest first; `q` finds a part of the e-mail address or display
    name (case-insensitive), `role` and `active` filter."""
    query = read_query()
    rows = await users.list_users(
        request.app[DB],
        search=query.q,
        role=query.role,
        active=query.active,
        after=query.position(),
        limit=query.limit,
    )
    return query.page(rows, user_out)


@routes.get("/api/v1/users/me")
@authenticated
@endpoint(returns=UserOut)
async def me(request: web.Request) -> Out:
    user = await users.get_user(request.app[DB], principal_of(request).user_id)
    if user is None:
        raise unauthorized("account_disabled", "this account no longer exists")
    return user_out(user)


@routes.patch("/api/v1/users/me")
@authenticated
@endpoint(body=ProfileChangeRequest, returns=UserOut)
async def change_profile(request: web.Request, read_body: ReadBody[ProfileChangeRequest]) -> Out:
    """Change the caller's display name (what teachers and classmates see)."""
    body = await read_body()
    user = await users.set_display_name(
        request.app[DB], principal_of(request).user_id, body.display_name
    )
    if user is None:
        raise unauthorized("account_disabled", "this account no longer exists")
    return user_out(user)


@routes.patch("/api/v1/users/{user_id}/role")
@require_roles("admin")
@endpoint(body=RoleChangeRequest, returns=UserOut, errors=(404, 409))
async def change_role(request: web.Request, read_body: ReadBody[RoleChangeRequest]) -> Out:
    user_id = path_uuid(request, "user_id")
    body = await read_body()
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
    return user_out(user)
