"""Declarative access rules: each API handler says who may call it.

    @public                        anyone, no token (register, login, refresh)
    @authenticated                 any signed-in user
    @require_roles("admin")        signed-in users with one of these roles

The auth middleware enforces the rule; `create_app` refuses to start if an /api route
has none, so a new route cannot be exposed by forgetting to decide.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web

from vtp.api.errors import unauthorized
from vtp.auth.principal import Principal
from vtp.db.models import Role

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

_ATTR = "__vtp_access__"
PRINCIPAL_KEY = web.RequestKey("principal", Principal)


@dataclass(frozen=True, slots=True)
class Access:
    public: bool
    roles: frozenset[Role] | None  # None: any authenticated user

    def describe(self) -> str:
        if self.public:
            return "public"
        return "authenticated" if self.roles is None else "roles: " + ",".join(sorted(self.roles))


def public(handler: H) -> H:
    setattr(handler, _ATTR, Access(public=True, roles=None))
    return handler


def authenticated(handler: H) -> H:
    setattr(handler, _ATTR, Access(public=False, roles=None))
    return handler


def require_roles(*roles: Role) -> Callable[[H], H]:
    def mark(handler: H) -> H:
        setattr(handler, _ATTR, Access(public=False, roles=frozenset(roles)))
        return handler

    return mark


def access_of(handler: object) -> Access | None:
    rule = getattr(handler, _ATTR, None)
    return rule if isinstance(rule, Access) else None


def principal_of(request: web.Request) -> Principal:
    principal = request.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise unauthorized("not_authenticated", "sign in first")
    return principal
