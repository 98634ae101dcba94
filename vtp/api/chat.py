"""/api/v1 chat: a course channel and each live session's room chat.

History is newest first with a cursor; a message is 1-4000 characters; its author may
edit or delete it, and the course's teachers and TAs may delete any (moderation).
Deleted messages keep their place in the history with ``body: null``. A student the
teacher removed from a live session can no longer read, post, edit or delete in that
session's chat (403 ``removed``).

Room chat sent over the signalling WebSocket goes through `post_in_room` (same rules).

Live delivery: the signalling layer registers callbacks in ``app[CHAT_HOOKS]`` (at
start-up, before the app is frozen); each is awaited with an event dict
``{"type": "chat.created"|"chat.edited"|"chat.deleted", "course_id", "session_id",
"message"}`` after the change is committed. A failing hook is logged, never fatal.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import Field, ValidationError, field_validator

from vtp.api.access import authenticated
from vtp.api.course_access import MEMBERS, PARTICIPANTS, CourseAccess, require_course_role, who
from vtp.api.endpoint import ReadBody, ReadQuery, endpoint
from vtp.api.errors import ApiError, conflict, forbidden, not_found
from vtp.api.sessions import load_session, refuse_removed
from vtp.api.validation import Body, ListQuery, Out, Page, derive, path_uuid, shaped
from vtp.appkeys import CHAT_LIMIT_USER, CONFIG, DB
from vtp.auth.principal import Principal
from vtp.db import chat as db
from vtp.db import models
from vtp.db import sessions as sessions_db
from vtp.db.models import Chat
from vtp.events import hooks
from vtp.events.stream import committed

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


MAX_MESSAGE = 4000
ChatHook = Callable[[dict[str, Any]], Awaitable[None]]
CHAT_HOOKS = web.AppKey("chat_hooks", list[ChatHook])


class MessageBody(Body):
    body: str = Field(min_length=1, max_length=MAX_MESSAGE)

    @field_validator("body")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a message cannot be blank")
        return value


MessageOut = derive(
    "MessageOut",
    models.Chat,
    replace={"body": str | None},
    add={"author_name": (str | None, ...)},
)


def message_out(msg: Chat, author_name: str | None = None) -> Out:
    """A message as members see it: a deleted message keeps its place, not its text."""
    body = None if msg.deleted_at is not None else msg.body
    return shaped(MessageOut, msg, body=body, author_name=author_name)


def message_json(msg: Chat) -> dict[str, Any]:
    """A message for the chat hooks and the room (live delivery, not an HTTP answer)."""
    return message_out(msg).model_dump(mode="json", exclude_unset=True)


async def _announce(request: web.Request, kind: str, msg: Chat) -> None:
    await announce(request.app, kind, msg)


async def announce(app: web.Application, kind: str, msg: Chat) -> None:
    for hook in app.get(CHAT_HOOKS, []):
        try:
            await hook(
                {
                    "type": kind,
                    "course_id": str(msg.course_id),
                    "session_id": str(msg.session_id) if msg.session_id else None,
                    "message": message_json(msg),
                }
            )
        except Exception:
            log.exception("chat hook failed")


async def _count_message(app: web.Application, user_id: uuid.UUID) -> int:
    """Count one message (post or edit: both are pushed to the class) against the
    user's chat allowance; the seconds to wait when it is spent, else 0."""
    config = app[CONFIG]
    verdict = await app[CHAT_LIMIT_USER].hit(
        str(user_id), limit=config.chat_max_messages, window_s=config.chat_window_s
    )
    return 0 if verdict.allowed else verdict.retry_after_s


async def _chat_allowance(request: web.Request, user_id: uuid.UUID) -> None:
    wait = await _count_message(request.app, user_id)
    if wait:
        raise ApiError(
            429,
            "rate_limited",
            f"too many chat messages; try again in {wait} s",
            {"retry_after_s": wait},
            headers={"Retry-After": str(wait)},
        )


def _history(rows: list[asyncpg.Record], query: ListQuery) -> Page:
    return query.page(rows, lambda r: message_out(Chat.from_record(r), r["author_name"]))


@routes.get("/api/v1/courses/{course_id}/chat")
@authenticated
@who("members of the course")
@endpoint(query=ListQuery, returns=MessageOut, many=True, errors=(403, 404, 409))
async def course_history(request: web.Request, read_query: ReadQuery[ListQuery]) -> Page:
    course_id = path_uuid(request, "course_id")
    await require_course_role(request, course_id, MEMBERS)
    query = read_query()
    rows = await db.history(
        request.app[DB],
        course_id=course_id,
        session_id=None,
        before=query.position(),
        limit=query.limit,
    )
    return _history(rows, query)


@routes.post("/api/v1/courses/{course_id}/chat")
@authenticated
@who("teachers, TAs and students of the course")
@endpoint(body=MessageBody, returns=MessageOut, status=201, errors=(403, 404, 409, 429))
async def course_post(request: web.Request, read_body: ReadBody[MessageBody]) -> Out:
    course_id = path_uuid(request, "course_id")
    access = await require_course_role(request, course_id, PARTICIPANTS, write=True)
    body = await read_body()
    await _chat_allowance(request, access.user_id)
    async with request.app[DB].acquire() as conn, conn.transaction():
        msg = await db.post(conn, course_id, None, access.user_id, body.body)
        await hooks.chat_posted(request.app, conn, msg)
    await _announce(request, "chat.created", msg)
    return message_out(msg)


@routes.get("/api/v1/sessions/{session_id}/chat")
@authenticated
@who("members of the course")
@endpoint(query=ListQuery, returns=MessageOut, many=True, errors=(403, 404, 409))
async def session_history(request: web.Request, read_query: ReadQuery[ListQuery]) -> Page:
    session, access = await load_session(request, MEMBERS)
    await refuse_removed(request.app, session.id, access.user_id)
    query = read_query()
    rows = await db.history(
        request.app[DB],
        course_id=session.course_id,
        session_id=session.id,
        before=query.position(),
        limit=query.limit,
    )
    return _history(rows, query)


@routes.post("/api/v1/sessions/{session_id}/chat")
@authenticated
@who("teachers, TAs and students of the course, while live")
@endpoint(body=MessageBody, returns=MessageOut, status=201, errors=(403, 404, 409, 429))
async def session_post(request: web.Request, read_body: ReadBody[MessageBody]) -> Out:
    session, access = await load_session(request, PARTICIPANTS, write=True)
    await refuse_removed(request.app, session.id, access.user_id)
    body = await read_body()
    if session.status != "live":
        raise conflict("session_not_live", "room chat is open while the session is live")
    await _chat_allowance(request, access.user_id)
    async with request.app[DB].acquire() as conn, conn.transaction():
        msg = await db.post(conn, session.course_id, session.id, access.user_id, body.body)
        await hooks.chat_posted(request.app, conn, msg)
    await _announce(request, "chat.created", msg)
    return message_out(msg)


async def _load_message(request: web.Request) -> tuple[Chat, CourseAccess]:
    """The message and the caller's access to its course (404 if invisible)."""
    msg = await db.get(request.app[DB], path_uuid(request, "message_id"))
    if msg is None:
        raise not_found("no such message")
    access = await require_course_role(
        request, msg.course_id, MEMBERS, write=True, missing="no such message"
    )
    if msg.session_id is not None:
        await refuse_removed(request.app, msg.session_id, access.user_id)
    return msg, access


@routes.patch("/api/v1/chat/{message_id}")
@authenticated
@who("its author")
@endpoint(body=MessageBody, returns=MessageOut, errors=(403, 404, 409, 429))
async def edit_message(request: web.Request, read_body: ReadBody[MessageBody]) -> Out:
    msg, access = await _load_message(request)
    body = await read_body()
    if msg.author_id != access.user_id:
        raise forbidden("only the author may edit a message")
    await _chat_allowance(request, access.user_id)
    edited = await db.edit(request.app[DB], msg.id, body.body)
    if edited is None:
        raise conflict("message_deleted", "a deleted message cannot be edited")
    await _announce(request, "chat.edited", edited)
    return message_out(edited)


@routes.delete("/api/v1/chat/{message_id}")
@authenticated
@who("its author; the course's teachers and TAs (moderation)")
@endpoint(status=204, errors=(400, 403, 404, 409))
async def delete_message(request: web.Request) -> web.Response:
    """The author deletes their message; teachers and TAs moderate any."""
    msg, access = await _load_message(request)
    if msg.author_id != access.user_id and not access.is_staff:
        raise forbidden("only the author or the course staff may delete a message")
    deleted = await db.delete(request.app[DB], msg.id)
    if deleted is not None and msg.deleted_at is None:
        await _announce(request, "chat.deleted", deleted)
    return web.Response(status=204)


class ChatRefused(Exception):
    """A room-chat message from signalling was refused; `code` matches the REST API's."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def post_in_room(
    app: web.Application, principal: Principal, room_name: str, body: str
) -> dict[str, Any]:
    """Room chat sent over the signalling WebSocket, under the same rules as
    POST /api/v1/sessions/{id}/chat: a teacher, TA or student of the course (or an
    admin), the session live, the course not archived, 1-4000 characters. The message
    is stored, the chat hooks are told, and its JSON is returned (to broadcast)."""
    try:
        text = MessageBody(body=body).body
    except ValidationError as exc:
        raise ChatRefused("validation_error", "a message has 1-4000 characters") from exc
    ticket = await sessions_db.join_ticket(
        app[DB], user_id=principal.user_id, is_admin=principal.role == "admin", room_name=room_name
    )
    if ticket is None:
        raise ChatRefused("not_found", "no such session")
    if principal.role != "admin" and ticket.course_role not in PARTICIPANTS:
        raise ChatRefused("forbidden", "your role in this course does not allow this")
    if ticket.course_status == "archived":
        raise ChatRefused("course_archived", "the course is archived and read-only")
    if ticket.status != "live":
        raise ChatRefused("session_not_live", "room chat is open while the session is live")
    try:
        await refuse_removed(app, ticket.session_id, principal.user_id)
    except ApiError as exc:
        raise ChatRefused(exc.code, exc.message) from None
    wait = await _count_message(app, principal.user_id)
    if wait:
        raise ChatRefused("rate_limited", f"too many chat messages; try again in {wait} s")
    async with app[DB].acquire() as conn, conn.transaction():
        msg = await db.post(conn, ticket.course_id, ticket.session_id, principal.user_id, text)
        await hooks.chat_posted(app, conn, msg)
    committed(app)  # (a socket's message: no request middleware relays it)
    await announce(app, "chat.created", msg)
    return message_json(msg)
