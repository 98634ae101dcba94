"""Page routes: HTML shells rendered with aiohttp-jinja2. They carry no data; the
JavaScript modules fetch it from /api with the browser's token."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp_jinja2
from aiohttp import web

routes = web.RouteTableDef()

ASSET_VERSION = "1"


@routes.get("/")
async def home(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/dashboard")


@routes.get("/signin")
@aiohttp_jinja2.template("signin.html")
async def signin(_request: web.Request) -> dict[str, Any]:
    return {"title": "Sign in", "page": "signin"}


@routes.get("/dashboard")
@aiohttp_jinja2.template("dashboard.html")
async def dashboard(_request: web.Request) -> dict[str, Any]:
    return {"title": "Dashboard", "page": "dashboard"}


@routes.get("/account")
@aiohttp_jinja2.template("account.html")
async def account(_request: web.Request) -> dict[str, Any]:
    return {"title": "Your account", "page": "account"}


@routes.get("/admin/users")
@aiohttp_jinja2.template("users.html")
async def admin_users(_request: web.Request) -> dict[str, Any]:
    return {"title": "Users", "page": "users"}


@routes.get("/reset-password")
@aiohttp_jinja2.template("reset.html")
async def reset_password(_request: web.Request) -> dict[str, Any]:
    return {"title": "Reset your password", "page": "reset"}


@routes.get("/classroom/{session_id}")
@aiohttp_jinja2.template("classroom.html")
async def classroom(request: web.Request) -> dict[str, Any]:
    try:
        session_id = uuid.UUID(request.match_info["session_id"])
    except ValueError:
        raise web.HTTPNotFound(text="no such classroom") from None
    return {"title": "Classroom", "page": "classroom", "session_id": str(session_id)}


def _uuid_param(request: web.Request, name: str, what: str) -> str:
    try:
        return str(uuid.UUID(request.match_info[name]))
    except ValueError:
        raise web.HTTPNotFound(text=f"no such {what}") from None


def _shell(path: str, template: str, title: str, param: str) -> None:
    """A page whose content the browser loads through the API: the server only checks
    that the id in its path is one, and hands it to the page (named for its template)."""

    @aiohttp_jinja2.template(template)
    async def page(request: web.Request) -> dict[str, Any]:
        page_id = _uuid_param(request, param, param.removesuffix("_id"))
        return {"title": title, "page": template.removesuffix(".html"), param: page_id}

    routes.get(path)(page)


_shell("/courses/{course_id}", "course.html", "Course", "course_id")
_shell("/courses/{course_id}/gradebook", "gradebook.html", "Grades", "course_id")
_shell("/assignments/{assignment_id}", "assignment.html", "Assignment", "assignment_id")
_shell("/lessons/{lesson_id}", "lesson.html", "Lesson", "lesson_id")
_shell("/sessions/{session_id}", "session.html", "Session", "session_id")
_shell("/recordings/{recording_id}", "recording.html", "Recording", "recording_id")
