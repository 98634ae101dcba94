"""The teaching API's route tables (courses to recordings), registered by :mod:`vtp.routes`.

Resources (all under /api/v1, JSON; lists are ``{"items", "next_cursor"}`` pages):
courses and enrollments (`courses`), live sessions and attendance (`sessions`),
assignments (`assignments`), submissions, grading and the gradebook (`submissions`),
lessons (`lessons`), chat (`chat`), recordings listings (`recordings`); the OpenAPI
document and reference page (`openapi`) cover every /api route of the app.

Who may do what inside a course is decided in ONE module, `vtp.api.course_access`
(404 for courses the caller is not a member of, 403 for members whose role may not act,
409 for writes to an archived course); each route also says it with ``@who(...)``.

Contact points for the rest of VTP:

* SFU rooms: `vtp.api.live_rooms` (open on start, close on end);
* signalling: `vtp.db.sessions.join_ticket` (may this user be in this room, as what),
  `vtp.db.attendance.record_join` / `record_leave` (attendance rows),
  `vtp.api.chat.post_in_room` (room chat from the WebSocket) and
  `vtp.api.chat.CHAT_HOOKS` (live delivery of chat changes).
"""

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

# The API description (public), generated from the whole route table: registered last.
DESCRIPTION_ROUTES = openapi.routes
