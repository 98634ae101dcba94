"""/api/v1 lessons: ordered within a course, markdown content, published/draft, and
attachments in the object store. Students and observers see published lessons only."""

from __future__ import annotations

import logging
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from vtp.api.access import authenticated
from vtp.api.course_access import (
    MEMBERS,
    STAFF,
    CourseAccess,
    CourseRole,
    enforce,
    require_course_role,
    who,
)
from vtp.api.endpoint import ReadBody, ReadQuery, endpoint
from vtp.api.errors import conflict, not_found
from vtp.api.uploads import (
    MAX_UPLOAD_BYTES,
    FileOut,
    delete_quietly,
    download,
    file_out,
    receive_file,
    store_put,
)
from vtp.api.validation import Body, Out, Page, Query, derive, path_uuid, refuse_nulls, shaped
from vtp.appkeys import DB, STORE
from vtp.db import lessons as db
from vtp.db import models
from vtp.db.models import Lesson

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


MAX_CONTENT = 200_000
MAX_ATTACHMENTS = 20
MAX_LESSONS = 1000


class LessonCreate(Body):
    title: str = Field(min_length=1, max_length=200)
    content_md: str = Field(default="", max_length=MAX_CONTENT)
    status: Literal["draft", "published"] = "draft"
    position: int | None = Field(default=None, ge=0, le=MAX_LESSONS)


class LessonUpdate(Body):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    content_md: str | None = Field(default=None, max_length=MAX_CONTENT)
    status: Literal["draft", "published"] | None = None
    position: int | None = Field(default=None, ge=0, le=MAX_LESSONS)


class LessonListQuery(Query):
    """Lessons are listed by position; the cursor is the last position seen."""

    limit: int = Field(default=50, ge=1, le=100)
    cursor: int | None = Field(default=None, ge=0, le=MAX_LESSONS)
    status: Literal["draft", "published"] | None = None


LessonOut = derive("LessonOut", models.Lesson, replace={"attachments": list[FileOut]})


def lesson_out(lesson: Lesson) -> Out:
    return shaped(LessonOut, lesson, attachments=[file_out(a) for a in lesson.attachments])


async def load_lesson(
    request: web.Request, roles: frozenset[CourseRole], *, write: bool = False
) -> tuple[Lesson, CourseAccess]:
    lesson = await db.get_lesson(request.app[DB], path_uuid(request, "lesson_id"))
    if lesson is None:
        raise not_found("no such lesson")
    access = await require_course_role(request, lesson.course_id, MEMBERS, missing="no such lesson")
    if lesson.status == "draft" and not access.is_staff:
        raise not_found("no such lesson")
    return lesson, enforce(access, roles, write=write)


@routes.post("/api/v1/courses/{course_id}/lessons")
@authenticated
@who("the course's teachers and TAs")
@endpoint(body=LessonCreate, returns=LessonOut, status=201, errors=(403, 404, 409))
async def create_lesson(request: web.Request, read_body: ReadBody[LessonCreate]) -> Out:
    course_id = path_uuid(request, "course_id")
    await require_course_role(request, course_id, STAFF, write=True)
    body = await read_body()
    async with request.app[DB].acquire() as conn, conn.transaction():
        if await db.count(conn, course_id) >= MAX_LESSONS:
            raise conflict("too_many_lessons", f"a course holds at most {MAX_LESSONS} lessons")
        lesson = await db.create_lesson(
            conn,
            course_id,
            position=body.position,
            title=body.title,
            content_md=body.content_md,
            status=body.status,
        )
    return lesson_out(lesson)


@routes.get("/api/v1/courses/{course_id}/lessons")
@authenticated
@who("members of the course (drafts: staff only)")
@endpoint(query=LessonListQuery, returns=LessonOut, many=True, errors=(403, 404, 409))
async def list_lessons(request: web.Request, read_query: ReadQuery[LessonListQuery]) -> Page:
    course_id = path_uuid(request, "course_id")
    access = await require_course_role(request, course_id, MEMBERS)
    query = read_query()
    status = query.status if access.is_staff else "published"
    if not access.is_staff and query.status == "draft":
        return Page([], None)
    rows = await db.list_lessons(
        request.app[DB],
        course_id,
        status=status,
        after_position=query.cursor,
        limit=query.limit,
    )
    more = len(rows) > query.limit
    shown = rows[: query.limit]
    # Lessons page by position, not by (created_at, id).
    next_cursor = str(shown[-1].position) if more and shown else None
    return Page([lesson_out(lesson) for lesson in shown], next_cursor)


@routes.get("/api/v1/lessons/{lesson_id}")
@authenticated
@who("members of the course (drafts: staff only)")
@endpoint(returns=LessonOut, errors=(400, 403, 404, 409))
async def get_lesson(request: web.Request) -> Out:
    lesson, _ = await load_lesson(request, MEMBERS)
    return lesson_out(lesson)


@routes.patch("/api/v1/lessons/{lesson_id}")
@authenticated
@who("the course's teachers and TAs")
@endpoint(body=LessonUpdate, returns=LessonOut, errors=(403, 404, 409))
async def update_lesson(request: web.Request, read_body: ReadBody[LessonUpdate]) -> Out:
    lesson, _ = await load_lesson(request, STAFF, write=True)
    body = await read_body()
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    refuse_nulls(changes, changes)
    async with request.app[DB].acquire() as conn, conn.transaction():
        # The course's ordering lock first, then the row: always in this order, so two
        # concurrent moves cannot deadlock.
        await db.lock_course_lessons(conn, lesson.course_id)
        current = await db.lock_lesson(conn, lesson.id)
        if current is None:
            raise not_found("no such lesson")
        updated = await db.update_lesson(conn, current, changes)
    return lesson_out(updated)


@routes.delete("/api/v1/lessons/{lesson_id}")
@authenticated
@who("the course's teachers and TAs")
@endpoint(status=204, errors=(400, 403, 404, 409))
async def delete_lesson(request: web.Request) -> web.Response:
    lesson, _ = await load_lesson(request, STAFF, write=True)
    async with request.app[DB].acquire() as conn, conn.transaction():
        await db.lock_course_lessons(conn, lesson.course_id)  # before the row (see above)
        current = await db.lock_lesson(conn, lesson.id)
        if current is None:
            raise not_found("no such lesson")
        await db.delete_lesson(conn, current)
    for meta in current.attachments:
        await delete_quietly(request.app[STORE], meta["key"])
    return web.Response(status=204)


# --- attachments --------------------------------------------------------------------------


def _find(lesson: Lesson, file_id: str) -> dict[str, Any]:
    for meta in lesson.attachments:
        if meta.get("id") == file_id:
            return meta
    raise not_found("no such attachment")


@routes.post("/api/v1/lessons/{lesson_id}/attachments")
@authenticated
@who("the course's teachers and TAs")
@endpoint(returns=FileOut, upload=True, status=201, errors=(400, 403, 404, 409, 413, 415, 503))
async def add_attachment(request: web.Request) -> Out:
    """Attach a file: the raw body, named by ?filename=."""
    lesson, _ = await load_lesson(request, STAFF, write=True)
    if len(lesson.attachments) >= MAX_ATTACHMENTS:
        raise conflict("too_many_files", f"a lesson holds at most {MAX_ATTACHMENTS} files")
    meta, upload = await receive_file(request, max_bytes=MAX_UPLOAD_BYTES, allowed=[])
    meta["key"] = f"lessons/{lesson.id}/{meta['id']}"
    await store_put(request.app[STORE], meta["key"], upload, meta["content_type"])
    try:
        async with request.app[DB].acquire() as conn, conn.transaction():
            current = await db.lock_lesson(conn, lesson.id)
            if current is None:
                raise not_found("no such lesson")
            if len(current.attachments) >= MAX_ATTACHMENTS:
                raise conflict("too_many_files", f"a lesson holds at most {MAX_ATTACHMENTS} files")
            await db.set_attachments(conn, lesson.id, [*current.attachments, meta])
    except BaseException:
        await delete_quietly(request.app[STORE], meta["key"])
        raise
    return file_out(meta)


@routes.get("/api/v1/lessons/{lesson_id}/attachments/{file_id}")
@authenticated
@who("members of the course (drafts: staff only)")
@endpoint(media="application/octet-stream", errors=(400, 403, 404, 409, 503))
async def get_attachment(request: web.Request) -> web.StreamResponse:
    lesson, _ = await load_lesson(request, MEMBERS)
    meta = _find(lesson, str(path_uuid(request, "file_id")))
    return await download(request, meta)


@routes.delete("/api/v1/lessons/{lesson_id}/attachments/{file_id}")
@authenticated
@who("the course's teachers and TAs")
@endpoint(status=204, errors=(400, 403, 404, 409))
async def delete_attachment(request: web.Request) -> web.Response:
    lesson, _ = await load_lesson(request, STAFF, write=True)
    file_id = str(path_uuid(request, "file_id"))
    _find(lesson, file_id)
    async with request.app[DB].acquire() as conn, conn.transaction():
        current = await db.lock_lesson(conn, lesson.id)
        if current is None:
            raise not_found("no such lesson")
        meta = _find(current, file_id)
        await db.set_attachments(
            conn, lesson.id, [a for a in current.attachments if a.get("id") != file_id]
        )
    await delete_quietly(request.app[STORE], meta["key"])
    return web.Response(status=204)
