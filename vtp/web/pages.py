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


@routes.get("/courses/{course_id}")
@aiohttp_jinja2.template("course.html")
async def course(request: web.Request) -> dict[str, Any]:
    course_id = _uuid_param(request, "course_id", "course")
    return {"title": "Course", "page": "course", "course_id": course_id}


@routes.get("/courses/{course_id}/gradebook")
@aiohttp_jinja2.template("gradebook.html")
async def gradebook(request: web.Request) -> dict[str, Any]:
    course_id = _uuid_param(request, "course_id", "course")
    return {"title": "Grades", "page": "gradebook", "course_id": course_id}


@routes.get("/assignments/{assignment_id}")
@aiohttp_jinja2.template("assignment.html")
async def assignment(request: web.Request) -> dict[str, Any]:
    assignment_id = _uuid_param(request, "assignment_id", "assignment")
    return {"title": "Assignment", "page": "assignment", "assignment_id": assignment_id}


@routes.get("/lessons/{lesson_id}")
@aiohttp_jinja2.template("lesson.html")
async def lesson(request: web.Request) -> dict[str, Any]:
    lesson_id = _uuid_param(request, "lesson_id", "lesson")
    return {"title": "Lesson", "page": "lesson", "lesson_id": lesson_id}


@routes.get("/sessions/{session_id}")
@aiohttp_jinja2.template("session.html")
async def session(request: web.Request) -> dict[str, Any]:
    session_id = _uuid_param(request, "session_id", "session")
    return {"title": "Session", "page": "session", "session_id": session_id}


@routes.get("/recordings/{recording_id}")
@aiohttp_jinja2.template("recording.html")
async def recording(request: web.Request) -> dict[str, Any]:
    recording_id = _uuid_param(request, "recording_id", "recording")
    return {"title": "Recording", "page": "recording", "recording_id": recording_id}
