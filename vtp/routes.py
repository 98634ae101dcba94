"""The route table: every HTTP and WebSocket endpoint of the application, in one place.

Modules declare their handlers in ``web.RouteTableDef`` tables; only this module adds
them to the application (``setup`` functions elsewhere hold state, contexts and hooks,
never routes). Order matters only for overlapping dynamic paths; it is kept as it was.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from vtp import metrics
from vtp.api import (
    accounts,
    auth,
    health,
    nodes,
    recordings_control,
    teaching_routes,
    users,
    webhooks,
)
from vtp.signalling import cascade, rest, websocket, whep, whip
from vtp.web import asset_routes, live, pages


def route_tables() -> list[Iterable[web.AbstractRouteDef]]:
    return [
        health.routes,
        auth.routes,
        users.routes,
        accounts.routes,  # password change, disable, reset links
        webhooks.routes,  # admins' webhook endpoints and delivery logs
        *teaching_routes.ROUTE_TABLES,
        teaching_routes.DESCRIPTION_ROUTES,
        websocket.routes,  # the SFU signalling WebSocket
        rest.routes,  # /api/v1/sfu: capabilities, REST transports, room state
        whip.routes,
        whep.routes,
        recordings_control.routes,  # the recorder's control and playback
        pages.routes,  # browser page shells
        asset_routes(),
        live.routes,  # the classroom live channel
        metrics.routes,
        nodes.routes,  # the cluster's nodes and where rooms live (admins)
        cascade.routes,  # node to node: an edge's relay signalling, on a room's node
    ]


def add_routes(app: web.Application) -> None:
    for table in route_tables():
        app.add_routes(table)
