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
from vtp.api.endpoint import ReadBody, ReadQuery, endpoint
from vtp.api.errors import field_error, not_found
from vtp.api.validation import Body, ListQuery, Out, Page, path_uuid, refuse_nulls, shaped
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


def webhook_out(endpoint: WebhookEndpoint) -> Out:
    # The secret is shown only when the endpoint is created and when it is rotated.
    return shaped(WebhookOut, endpoint, hide=("secret", "secret_sealed"))


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
@endpoint(body=WebhookCreate, returns=WebhookCreatedOut, status=201)
async def create_webhook(request: web.Request, read_body: ReadBody[WebhookCreate]) -> Out:
    """Register an endpoint; the answer holds its signing secret (shown only here)."""
    body = await read_body()
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
    return shaped(WebhookCreatedOut, endpoint, hide=("secret_sealed",), secret=secret)


@routes.get("/api/v1/webhooks")
@require_roles("admin")
@endpoint(query=ListQuery, returns=WebhookOut, many=True)
async def list_webhooks(request: web.Request, read_query: ReadQuery[ListQuery]) -> Page:
    query = read_query()
    rows = await db.list_endpoints(request.app[DB], after=query.position(), limit=query.limit)
    return query.page(rows, webhook_out)


@routes.get("/api/v1/webhooks/{webhook_id}")
@require_roles("admin")
@endpoint(returns=WebhookOut, errors=(400, 404))
async def get_webhook(request: web.Request) -> Out:
    return webhook_out(await _load(request))


@routes.patch("/api/v1/webhooks/{webhook_id}")
@require_roles("admin")
@endpoint(body=WebhookUpdate, returns=WebhookOut, errors=(404,))
async def update_webhook(request: web.Request, read_body: ReadBody[WebhookUpdate]) -> Out:
    endpoint = await _load(request)
    body = await read_body()
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    refuse_nulls(changes, ("url", "event_types", "description", "enabled"))
    if "url" in changes:
        await _check_target(request, changes["url"])
    updated = await db.update_endpoint(request.app[DB], endpoint.id, changes)
    if updated is None:
        raise not_found("no such webhook")
    await _changed(request)
    return webhook_out(updated)


@routes.post("/api/v1/webhooks/{webhook_id}/secret")
@require_roles("admin")
@endpoint(returns=WebhookSecretOut, errors=(400, 404))
async def rotate_secret(request: web.Request) -> Out:
    """A new signing secret (the old one stops signing now)."""
    endpoint = await _load(request)
    secret = signing.new_secret()
    updated = await db.update_endpoint(
        request.app[DB], endpoint.id, {"secret_sealed": request.app[SECRET_BOX].seal(secret)}
    )
    if updated is None:
        raise not_found("no such webhook")
    await _changed(request)
    return WebhookSecretOut(id=updated.id, secret=secret)


@routes.delete("/api/v1/webhooks/{webhook_id}")
@require_roles("admin")
@endpoint(status=204, errors=(400, 404))
async def delete_webhook(request: web.Request) -> web.Response:
    if not await db.delete_endpoint(request.app[DB], path_uuid(request, "webhook_id")):
        raise not_found("no such webhook")
    await _changed(request)
    return web.Response(status=204)


@routes.get("/api/v1/webhooks/{webhook_id}/deliveries")
@require_roles("admin")
@endpoint(query=DeliveryQuery, returns=DeliveryOut, many=True, errors=(404,))
async def list_deliveries(request: web.Request, read_query: ReadQuery[DeliveryQuery]) -> Page:
    """Delivery attempts to this endpoint, newest first."""
    endpoint = await _load(request)
    query = read_query()
    rows = await db.list_deliveries(
        request.app[DB],
        endpoint.id,
        outcome=query.outcome,
        event_id=query.event_id,
        after=query.position(),
        limit=query.limit,
    )
    return query.page(rows, lambda d: shaped(DeliveryOut, d))
