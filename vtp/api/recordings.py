"""/api/v1 recordings: listed per course or session with their status, visible to the
course's members only (the object key and errors to staff only)."""

from __future__ import annotations

import uuid
from typing import Literal

import asyncpg
from aiohttp import web

from vtp.api.access import authenticated
from vtp.api.course_access import MEMBERS, require_course_role, who
from vtp.api.endpoint import ReadQuery, endpoint
from vtp.api.errors import not_found
from vtp.api.sessions import load_session
from vtp.api.validation import ListQuery, Out, Page, derive, path_uuid, shaped
from vtp.appkeys import DB
from vtp.db import models
from vtp.db import recordings as db

routes = web.RouteTableDef()


class RecordingListQuery(ListQuery):
    status: Literal["recording", "uploading", "available", "failed"] | None = None
    session_id: uuid.UUID | None = None


RecordingOut = derive(
    "RecordingOut",
    models.Recording,
    optional=("object_key", "error"),
    add={"course_id": (uuid.UUID, ...), "session_title": (str, ...)},
)


def recording_out(row: asyncpg.Record, *, staff: bool) -> Out:
    return shaped(
        RecordingOut,
        db.from_row(row),
        hide=() if staff else ("object_key", "error"),  # staff only
        course_id=row["course_id"],
        session_title=row["session_title"],
    )


@routes.get("/api/v1/courses/{course_id}/recordings")
@authenticated
@who("members of the course")
@endpoint(query=RecordingListQuery, returns=RecordingOut, many=True, errors=(403, 404, 409))
async def course_recordings(
    request: web.Request, read_query: ReadQuery[RecordingListQuery]
) -> Page:
    course_id = path_uuid(request, "course_id")
    access = await require_course_role(request, course_id, MEMBERS)
    query = read_query()
    rows = await db.list_recordings(
        request.app[DB],
        course_id=course_id,
        session_id=query.session_id,
        status=query.status,
        after=query.position(),
        limit=query.limit,
    )
    staff = access.is_staff
    return query.page(rows, lambda r: recording_out(r, staff=staff))


class SessionRecordingQuery(ListQuery):
    status: Literal["recording", "uploading", "available", "failed"] | None = None


@routes.get("/api/v1/sessions/{session_id}/recordings")
@authenticated
@who("members of the course")
@endpoint(query=SessionRecordingQuery, returns=RecordingOut, many=True, errors=(403, 404, 409))
async def session_recordings(
    request: web.Request, read_query: ReadQuery[SessionRecordingQuery]
) -> Page:
    session, access = await load_session(request, MEMBERS)
    query = read_query()
    rows = await db.list_recordings(
        request.app[DB],
        course_id=None,
        session_id=session.id,
        status=query.status,
        after=query.position(),
        limit=query.limit,
    )
    staff = access.is_staff
    return query.page(rows, lambda r: recording_out(r, staff=staff))


@routes.get("/api/v1/recordings/{recording_id}")
@authenticated
@who("members of the course")
@endpoint(returns=RecordingOut, errors=(400, 403, 404, 409))
async def get_recording(request: web.Request) -> Out:
    row = await db.get_with_course(request.app[DB], path_uuid(request, "recording_id"))
    if row is None:
        raise not_found("no such recording")
    access = await require_course_role(
        request, row["course_id"], MEMBERS, missing="no such recording"
    )
    return recording_out(row, staff=access.is_staff)
