"""/api/v1/webhooks: admins register the endpoints class events are sent to, and read
each endpoint's delivery log (docs/events.md).

* ``POST /api/v1/webhooks``: ``{url, event_types?, description?, enabled?, secret?}``;
  the answer shows the signing secret (generated unless given), this once.
* ``GET /api/v1/webhooks``, ``GET|PATCH|DELETE /api/v1/webhooks/{webhook_id}``.
* ``POST /api/v1/webhooks/{webhook_id}/secret``: a new secret (shown once).
* ``GET /api/v1/webhooks/{webhook_id}/deliveries``: every attempt, newest first
  (``?outcome=dead`` for the dead-letter records, which carry the event).

Targets must be ``https://`` at public addresses unless the operator allows otherwise
(``VTP_WEBHOOK_ALLOW_HTTP``, ``VTP_WEBHOOK_ALLOW_PRIVATE``); the deliverer checks the
resolved address again at every delivery.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import Field, field_validator

from vtp.api.access import principal_of, require_roles
from vtp.api.body import read_json
from vtp.api.domain_schema import Body, field_error, refuse_nulls
from vtp.api.errors import not_found
from vtp.api.query import ListQuery, decode_cursor, page, parse_query
from vtp.api.responses import Out, returns
from vtp.api.users import path_uuid
from vtp.appkeys import CONFIG, DB, REDIS
from vtp.db import webhooks as db
from vtp.db.models import WebhookEndpoint
from vtp.events import signing
from vtp.events.deliverer import version_key
from vtp.events.envelope import EVENT_TYPES
from vtp.events.secret_box import SECRET_BOX
from vtp.events.targets import TargetRefused, check_resolved, check_url

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def _known_types(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    unknown = sorted(set(value) - EVENT_TYPES)
    if unknown:
        raise ValueError(f"unknown event type(s): {', '.join(unknown)}")
    return sorted(set(value))


def _secret(value: str | None) -> str | None:
    if value is not None:
        signing.secret_key(value)  # BadSecret (a ValueError) says what is wrong
    return value


class WebhookCreate(Body):
    url: str = Field(min_length=1, max_length=2000)
    event_types: list[str] = Field(default_factory=list, max_length=100)
    description: str = Field(default="", max_length=500)
    enabled: bool = True
    secret: str | None = Field(default=None, max_length=200)

    _types = field_validator("event_types")(_known_types)
    _check_secret = field_validator("secret")(_secret)


class WebhookUpdate(Body):
    url: str | None = Field(default=None, min_length=1, max_length=2000)
    event_types: list[str] | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = None

    _types = field_validator("event_types")(_known_types)


class DeliveryQuery(ListQuery):
    outcome: Literal["delivered", "failed", "dead"] | None = None
    event_id: str | None = Field(default=None, max_length=100)


class WebhookOut(Out):
    id: uuid.UUID
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class WebhookCreatedOut(WebhookOut):
    secret: str


class WebhookSecretOut(Out):
    id: uuid.UUID
    secret: str


class DeliveryOut(Out):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: str
    event_type: str
    attempt: int
    outcome: Literal["delivered", "failed", "dead"]
    status_code: int | None
    error: str | None
    duration_ms: int
    payload: dict[str, Any] | None
    created_at: datetime


async def _check_target(request: web.Request, url: str) -> None:
    config = request.app[CONFIG]
    try:
        host, port = check_url(
            url, allow_http=config.webhook_allow_http, allow_private=config.webhook_allow_private
        )
        await check_resolved(host, port, allow_private=config.webhook_allow_private)
    except TargetRefused as exc:
        raise field_error("url", str(exc)) from exc


async def _changed(request: web.Request) -> None:
    """Every node's deliverer reloads its endpoints."""
    await request.app[REDIS].incr(version_key(request.app[CONFIG].events_stream))


async def _load(request: web.Request) -> WebhookEndpoint:
    endpoint = await db.get_endpoint(request.app[DB], path_uuid(request, "webhook_id"))
    if endpoint is None:
        raise not_found("no such webhook")
    return endpoint


@routes.post("/api/v1/webhooks")
@require_roles("admin")
@returns(WebhookCreatedOut)
async def create_webhook(request: web.Request) -> web.Response:
    """Register an endpoint; the answer holds its signing secret (shown only here)."""
    body = await read_json(request, WebhookCreate)
    await _check_target(request, body.url)
    secret = body.secret or signing.new_secret()
    endpoint = await db.create_endpoint(
        request.app[DB],
        url=body.url,
        secret_sealed=request.app[SECRET_BOX].seal(secret),
        event_types=body.event_types,
        description=body.description,
        enabled=body.enabled,
        created_by=principal_of(request).user_id,
    )
    await _changed(request)
    log.info("webhook %s registered for %s", endpoint.id, endpoint.url)
    return web.json_response({**endpoint.to_json(), "secret": secret}, status=201)


@routes.get("/api/v1/webhooks")
@require_roles("admin")
@returns(WebhookOut, many=True)
async def list_webhooks(request: web.Request) -> web.Response:
    query = parse_query(request, ListQuery)
    rows = await db.list_endpoints(
        request.app[DB], after=decode_cursor(query.cursor), limit=query.limit
    )
    return web.json_response(page(rows, query.limit, lambda e: e.to_json()))


@routes.get("/api/v1/webhooks/{webhook_id}")
@require_roles("admin")
@returns(WebhookOut)
async def get_webhook(request: web.Request) -> web.Response:
    return web.json_response((await _load(request)).to_json())


@routes.patch("/api/v1/webhooks/{webhook_id}")
@require_roles("admin")
@returns(WebhookOut)
async def update_webhook(request: web.Request) -> web.Response:
    endpoint = await _load(request)
    body = await read_json(request, WebhookUpdate)
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    refuse_nulls(changes, ("url", "event_types", "description", "enabled"))
    if "url" in changes:
        await _check_target(request, changes["url"])
    updated = await db.update_endpoint(request.app[DB], endpoint.id, changes)
    if updated is None:
        raise not_found("no such webhook")
    await _changed(request)
    return web.json_response(updated.to_json())


@routes.post("/api/v1/webhooks/{webhook_id}/secret")
@require_roles("admin")
@returns(WebhookSecretOut)
async def rotate_secret(request: web.Request) -> web.Response:
    """A new signing secret (the old one stops signing now)."""
    endpoint = await _load(request)
    secret = signing.new_secret()
    updated = await db.update_endpoint(
        request.app[DB], endpoint.id, {"secret_sealed": request.app[SECRET_BOX].seal(secret)}
    )
    if updated is None:
        raise not_found("no such webhook")
    await _changed(request)
    return web.json_response({"id": str(updated.id), "secret": secret})


@routes.delete("/api/v1/webhooks/{webhook_id}")
@require_roles("admin")
async def delete_webhook(request: web.Request) -> web.Response:
    if not await db.delete_endpoint(request.app[DB], path_uuid(request, "webhook_id")):
        raise not_found("no such webhook")
    await _changed(request)
    return web.Response(status=204)


@routes.get("/api/v1/webhooks/{webhook_id}/deliveries")
@require_roles("admin")
@returns(DeliveryOut, many=True)
async def list_deliveries(request: web.Request) -> web.Response:
    """Delivery attempts to this endpoint, newest first."""
    endpoint = await _load(request)
    query = parse_query(request, DeliveryQuery)
    rows = await db.list_deliveries(
        request.app[DB],
        endpoint.id,
        outcome=query.outcome,
        event_id=query.event_id,
        after=decode_cursor(query.cursor),
        limit=query.limit,
    )
    return web.json_response(page(rows, query.limit, lambda d: d.to_json()))
