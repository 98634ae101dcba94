"""The teaching-domain API (issue 7): every route table, registered in one call."""

from __future__ import annotations

from aiohttp import web

from vtp.api import (
    assignments,
    chat,
    courses,
    lessons,
    openapi,
    recordings,
    sessions,
    submissions,
)

ROUTE_TABLES: tuple[web.RouteTableDef, ...] = (
    courses.routes,
    sessions.routes,
    assignments.routes,
    submissions.routes,
    lessons.routes,
    chat.routes,
    recordings.routes,
)


def setup_domain(app: web.Application) -> None:
    for table in ROUTE_TABLES:
        app.add_routes(table)
    # The API description (public), generated from the whole route table.
    app.add_routes(openapi.routes)
