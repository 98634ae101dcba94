"""The browser client: server-rendered page shells and the live classroom channel.

Pages (``/``, ``/signin``, ``/dashboard``, ``/classroom/{session_id}``) are jinja2 shells
that load plain JavaScript modules from ``/static/``; the modules get every piece of data
through ``/api`` with the JWT the browser keeps, and speak to the SFU over the WebSocket
protocol of docs/protocol.md. The classroom's own live channel (hands, teacher controls,
media state, chat delivery, presence and attendance) is :mod:`vtp.web.live`; with it
:mod:`vtp.auth.removals` (whom a teacher removed, in Redis), :mod:`vtp.web.muting` (the
rules of server-enforced mute) and :mod:`vtp.web.presence` (attendance for every way
into a session's room).

The course itself has pages of its own: ``/courses/{id}`` (overview, lessons,
assignments, sessions, recordings, people, chat), ``/courses/{id}/gradebook``,
``/lessons/{id}``, ``/assignments/{id}`` (a student's work, or the staff's grading queue),
``/sessions/{id}`` (editing, attendance, the session's chat) and ``/recordings/{id}`` (the
player); ``/account`` (display name, password) and, for admins, ``/admin/users`` (site
roles, disabling, reset links). Every action on them is a call to the public API;
Markdown is rendered into DOM nodes by ``static/app/markdown.js``, never as HTML. Course
and session chat stay current by polling the chat history while the tab is visible
(``static/app/chat_feed.js``): the course channel has no push channel, and the live
channel above is for people in a live session (opening it counts as attending).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from vtp.appkeys import CONFIG
from vtp.web import headers, live, live_relayed, pages
from vtp.web.class_events import class_events_ctx
from vtp.web.participation import participation_ctx

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parents[2] / "static"


def setup(app: web.Application) -> None:
    """Templates, page headers and the classroom live channel's state (routes: vtp.routes)."""
    # No context processors: they would add a middleware to every request, /api included.
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    env.globals["asset_version"] = pages.ASSET_VERSION
    headers.setup(app, app[CONFIG])
    # Before the classroom's presence: its last departures at shutdown are still emitted.
    app.cleanup_ctx.append(class_events_ctx)
    app.cleanup_ctx.append(participation_ctx)
    live.setup(app)
    live_relayed.setup(app)  # (with VTP_CLUSTER only: vtp.channel.relay)


def asset_routes() -> list[web.AbstractRouteDef]:
    """``/static/app/``: the browser client's own assets."""
    routes: list[web.AbstractRouteDef] = []
    if (STATIC / "app").is_dir():
        routes.append(
            web.static("/static/app/", STATIC / "app", name="static", append_version=False)
        )
    return routes
