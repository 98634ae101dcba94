"""The classroom live channel: ``GET /api/v1/sessions/{session_id}/live`` (WebSocket).

The SFU signalling protocol (docs/protocol.md) moves media; a classroom needs more that
it does not carry yet: raised hands, the teacher muting or removing a student, each
participant's microphone/camera state, live chat delivery, the recording state, ending
the session for everyone, and who is present since when. The browser client opens this
channel next to the SFU WebSocket. Everything here is additive and could move into the
signalling protocol as messages of its own (see the report of issue 5).

Protocol (JSON text frames with a ``type``):

client -> server
  ``auth {token}``                 first, within 10 s (browsers cannot set headers)
  ``hand {raised}``                raise or lower my hand
  ``lower-hand {user_id}``         presenter: lower someone's hand
  ``media {audio, video, screen}`` my publishing state, shown to everyone
  ``mute {user_id}``               presenter: that participant's page mutes its microphone
  ``remove {user_id, reason?}``    presenter: the participant's SFU peers leave the room
                                   and this channel and the SFU room refuse them until
                                   the session ends (kept in Redis: every VTP process,
                                   and a restarted one, knows)
  ``record {action}``              presenter: ``start`` or ``stop`` recording the session
                                   (as ``POST /api/v1/sessions/{id}/recording/start|stop``;
                                   everyone then gets ``recording``)
  ``end``                          presenter, after ``POST /api/v1/sessions/{id}/end``:
                                   everyone is told the session ended
  ``ping``

server -> client
  ``ready {you, participants, recording, now}``; ``recording {recording}`` whenever the
  recorder starts or stops this session (``{available, active, reason}``: start and stop
  go through ``POST /api/v1/sessions/{id}/recording/start|stop``);
  ``participant-joined {participant}``;
  ``participant-left {user_id, reason}``; ``hand {user_id, raised, at}``;
  ``media {user_id, audio, video, screen}``; ``muted {by}`` and ``removed {by, reason}``
  (to their target); ``chat {event, message}`` (created/edited/deleted, from the chat
  API's hooks); ``ended``; ``pong``; ``error {error: {code, message, details}}``.

A participant is a user (several tabs count once): ``{user_id, display, role, since,
hand_raised_at, audio, video, screen}``; ``since`` is when their current stay began.
Attendance rows (``session_participants``) are written when a user's first connection
opens and closed when their last one closes.

Close codes: 4401 (authentication failed), 4403 (not a member, or removed), 4409 (the
session is not live), 1000 after ``ended``.

Participants, hands and media state live in this process (one process serves a class:
its SFU room is here too); removals are in Redis (:mod:`vtp.web.removals`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from vtp import jsonlimits
from vtp.api.access import public
from vtp.api.chat import CHAT_HOOKS, ChatHook
from vtp.api.errors import ApiError
from vtp.appkeys import DB, REDIS, TOKENS
from vtp.auth.tokens import TokenError
from vtp.db import attendance as attendance_db
from vtp.db import sessions as sessions_db
from vtp.db.users import get_user
from vtp.recorder import db as recorder_db
from vtp.recorder.service import RECORDER, RecordingChanged
from vtp.web import removals

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

LIVE_PATH = "/api/v1/sessions/{session_id}/live"
AUTH_TIMEOUT_S = 10.0
HEARTBEAT_S = 10.0
MAX_MESSAGE_BYTES = 16 * 1024
MAX_QUEUED = 512
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_LIVE = 4409
NO_RECORDER = "Recording is not available: no recorder runs on this server."


def _now() -> datetime:
    return datetime.now(UTC)


class ChannelError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(eq=False)
class Connection:
    """One open live-channel WebSocket of one user."""

    ws: web.WebSocketResponse
    user_id: uuid.UUID
    display: str
    role: str  # "presenter" | "viewer"
    out: asyncio.Queue[dict[str, Any] | tuple[int, str]] = field(default_factory=asyncio.Queue)
    closing: bool = False

    def send(self, message: dict[str, Any]) -> None:
        if self.closing:
            return
        if self.out.qsize() >= MAX_QUEUED:
            self.close(WSCloseCode.POLICY_VIOLATION, "too many unread messages")
            return
        self.out.put_nowait(message)

    def close(self, code: int, reason: str) -> None:
        """Close the WebSocket once what is queued before has been sent."""
        if not self.closing:
            self.closing = True
            self.out.put_nowait((code, reason))


@dataclass(eq=False)
class Participant:
    user_id: uuid.UUID
    display: str
    role: str
    since: datetime
    attendance_id: uuid.UUID | None = None
    hand_raised_at: datetime | None = None
    audio: bool = False
    video: bool = False
    screen: bool = False
    connections: set[Connection] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": str(self.user_id),
            "display": self.display,
            "role": self.role,
            "since": self.since.isoformat(),
            "hand_raised_at": self.hand_raised_at.isoformat() if self.hand_raised_at else None,
            "audio": self.audio,
            "video": self.video,
            "screen": self.screen,
        }


@dataclass(eq=False)
class LiveRoom:
    session_id: uuid.UUID
    room_name: str
    participants: dict[uuid.UUID, Participant] = field(default_factory=dict)
    ended: bool = False

    def broadcast(self, message: dict[str, Any], *, skip: Connection | None = None) -> None:
        for participant in self.participants.values():
            for conn in participant.connections:
                if conn is not skip:
                    conn.send(message)


class LiveRooms:
    def __init__(self) -> None:
        self.rooms: dict[uuid.UUID, LiveRoom] = {}

    def get(self, session_id: uuid.UUID, room_name: str) -> LiveRoom:
        room = self.rooms.get(session_id)
        if room is None:
            room = self.rooms[session_id] = LiveRoom(session_id, room_name)
        return room

    def forget_if_empty(self, room: LiveRoom) -> None:
        # (whom the teacher removed is kept in Redis, not here: see vtp.web.removals)
        if not room.participants:
            self.rooms.pop(room.session_id, None)


LIVE_ROOMS = web.AppKey("web_live_rooms", LiveRooms)


def _error(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"type": "error", "error": {"code": code, "message": message, "details": details}}


def recording_state(app: web.Application, session_id: uuid.UUID) -> dict[str, Any]:
    """Is the session being recorded, could the teacher record it, and why not."""
    recorder = app.get(RECORDER)
    if recorder is None:
        return {"available": False, "active": False, "reason": NO_RECORDER}
    active = recorder.recording_of(session_id) is not None
    health = recorder.health()
    if not health.ok and not active:
        reason = f"Recording is not available: {health.error or 'the recorder is not healthy'}."
        return {"available": False, "active": False, "reason": reason}
    return {"available": True, "active": active, "reason": ""}


# --- the WebSocket -----------------------------------------------------------------------


async def _write_loop(conn: Connection) -> None:
    while True:
        item = await conn.out.get()
        if conn.ws.closed:
            return
        if isinstance(item, tuple):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=item[0], message=item[1].encode()[:120])
            return
        try:
            await conn.ws.send_json(item)
        except (ConnectionError, RuntimeError):
            return


async def _authenticate(
    request: web.Request, ws: web.WebSocketResponse, session_id: uuid.UUID
) -> tuple[Connection, sessions_db.JoinTicket] | None:
    app = request.app
    try:
        msg = await ws.receive(timeout=AUTH_TIMEOUT_S)
    except TimeoutError:
        await _refuse(ws, CLOSE_UNAUTHORIZED, "not_authenticated", "send an auth message first")
        return None
    try:
        data = jsonlimits.loads(msg.data) if msg.type == WSMsgType.TEXT else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("type") != "auth" or not data.get("token"):
        await _refuse(ws, CLOSE_UNAUTHORIZED, "not_authenticated", "send an auth message first")
        return None
    try:
        principal = await app[TOKENS].verify_access(str(data["token"]))
    except TokenError as exc:
        await _refuse(ws, CLOSE_UNAUTHORIZED, exc.code, exc.message)
        return None
    pool = app[DB]
    ticket = await sessions_db.join_ticket(
        pool,
        user_id=principal.user_id,
        is_admin=principal.role == "admin",
        session_id=session_id,
    )
    if ticket is None:
        await _refuse(ws, CLOSE_FORBIDDEN, "not_found", "no such session")
        return None
    if ticket.status != "live":
        await _refuse(
            ws, CLOSE_NOT_LIVE, "session_not_live", f"the session is {ticket.status}, not live"
        )
        return None
    reason = await removals.reason(app[REDIS], session_id, principal.user_id)
    if reason is not None:
        await _refuse(ws, CLOSE_FORBIDDEN, "removed", f"you were removed from this class: {reason}")
        return None
    user = await get_user(pool, principal.user_id)
    if user is None or not user.is_active:
        await _refuse(ws, CLOSE_UNAUTHORIZED, "account_disabled", "this account no longer exists")
        return None
    conn = Connection(ws=ws, user_id=principal.user_id, display=user.display_name, role=ticket.role)
    return conn, ticket


async def _refuse(ws: web.WebSocketResponse, close_code: int, code: str, message: str) -> None:
    with contextlib.suppress(Exception):
        await ws.send_json(_error(code, message))
        await ws.close(code=close_code, message=code.encode()[:120])


@routes.get(LIVE_PATH)
@public  # authenticates inside: a first "auth" message (browsers cannot set headers)
async def live_channel(request: web.Request) -> web.StreamResponse:
    """The classroom live channel (WebSocket): hands, teacher controls, media state,
    chat delivery and presence for one live session. See vtp/web/live.py."""
    try:
        session_id = uuid.UUID(request.match_info["session_id"])
    except ValueError:
        raise ApiError(404, "not_found", "no such session") from None
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "bad_request", "this endpoint speaks WebSocket only")
    await ws.prepare(request)
    authenticated = await _authenticate(request, ws, session_id)
    if authenticated is None:
        return ws
    conn, ticket = authenticated
    app = request.app
    room = app[LIVE_ROOMS].get(session_id, ticket.room_name)
    writer = asyncio.create_task(_write_loop(conn))
    await _enter(app, room, conn)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                await _handle(app, room, conn, msg.data)
            except ChannelError as exc:
                conn.send(_error(exc.code, exc.message))
            except Exception:
                logger.exception("live channel message failed")
                conn.send(_error("internal_error", "the server failed to handle this message"))
    finally:
        conn.close(WSCloseCode.OK, "bye")
        await asyncio.shield(_exit(app, room, conn, "left"))
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(writer, 2)
    return ws


async def _enter(app: web.Application, room: LiveRoom, conn: Connection) -> None:
    participant = room.participants.get(conn.user_id)
    first = participant is None
    if participant is None:
        participant = Participant(conn.user_id, conn.display, conn.role, since=_now())
        room.participants[conn.user_id] = participant
    participant.connections.add(conn)
    if first:
        try:
            participant.attendance_id = await attendance_db.record_join(
                app[DB],
                room.session_id,
                conn.user_id,
                "presenter" if conn.role == "presenter" else "viewer",
            )
        except Exception:
            logger.exception("attendance join not recorded")
    conn.send(
        {
            "type": "ready",
            "you": {"user_id": str(conn.user_id), "role": conn.role, "display": conn.display},
            "participants": [p.to_json() for p in room.participants.values()],
            "recording": recording_state(app, room.session_id),
            "now": _now().isoformat(),
        }
    )
    if first:
        room.broadcast(
            {"type": "participant-joined", "participant": participant.to_json()}, skip=conn
        )


async def _exit(app: web.Application, room: LiveRoom, conn: Connection, reason: str) -> None:
    participant = room.participants.get(conn.user_id)
    if participant is None or conn not in participant.connections:
        return
    participant.connections.discard(conn)
    if participant.connections:
        return
    del room.participants[conn.user_id]
    room.broadcast({"type": "participant-left", "user_id": str(conn.user_id), "reason": reason})
    app[LIVE_ROOMS].forget_if_empty(room)
    try:
        await attendance_db.record_leave(
            app[DB], room.session_id, conn.user_id, participant.attendance_id
        )
    except Exception:
        logger.exception("attendance leave not recorded")


def _target(room: LiveRoom, data: dict[str, Any]) -> Participant:
    try:
        user_id = uuid.UUID(str(data.get("user_id")))
    except ValueError:
        raise ChannelError("validation_error", "user_id must be a UUID") from None
    participant = room.participants.get(user_id)
    if participant is None:
        raise ChannelError("not_found", "that participant is not in the class")
    return participant


def _presenter(conn: Connection) -> None:
    if conn.role != "presenter":
        raise ChannelError("forbidden", "only the teacher may do this")


async def _handle(app: web.Application, room: LiveRoom, conn: Connection, raw: str) -> None:
    try:
        data = jsonlimits.loads(raw)
    except ValueError:
        raise ChannelError("invalid_json", "the message is not JSON") from None
    if not isinstance(data, dict):
        raise ChannelError("invalid_json", "the message is not a JSON object")
    kind = data.get("type")
    me = room.participants[conn.user_id]
    if kind == "ping":
        conn.send({"type": "pong"})
    elif kind == "hand":
        me.hand_raised_at = _now() if data.get("raised") else None
        room.broadcast(_hand(me))
    elif kind == "lower-hand":
        _presenter(conn)
        target = _target(room, data)
        target.hand_raised_at = None
        room.broadcast(_hand(target))
    elif kind == "media":
        me.audio = bool(data.get("audio"))
        me.video = bool(data.get("video"))
        me.screen = bool(data.get("screen"))
        room.broadcast(
            {
                "type": "media",
                "user_id": str(me.user_id),
                "audio": me.audio,
                "video": me.video,
                "screen": me.screen,
            }
        )
    elif kind == "mute":
        _presenter(conn)
        target = _target(room, data)
        for other in target.connections:
            other.send({"type": "muted", "by": conn.display})
    elif kind == "remove":
        _presenter(conn)
        target = _target(room, data)
        if target.role == "presenter":
            raise ChannelError("forbidden", "a teacher cannot be removed")
        reason = str(data.get("reason") or "removed by the teacher")[:200]
        await remove_participant(app, room, target, by=conn.display, reason=reason)
    elif kind == "record":
        _presenter(conn)
        await _record(app, room, conn, data.get("action"))
    elif kind == "end":
        _presenter(conn)
        session = await sessions_db.get_session(app[DB], room.session_id)
        if session is None or session.status == "live":
            raise ChannelError("session_live", "end the session with the API first")
        await end_room(room, by=conn.display)
    else:
        raise ChannelError("unknown_type", f"unknown message type {kind!r}")


async def _record(app: web.Application, room: LiveRoom, conn: Connection, action: Any) -> None:
    """Start or stop recording; the recorder's listener then tells everyone."""
    recorder = app.get(RECORDER)
    if recorder is None:
        raise ChannelError("recorder_unavailable", NO_RECORDER)
    if action == "start":
        try:
            await recorder.start_recording(room.session_id, conn.user_id)
        except recorder_db.NotLive as exc:
            raise ChannelError("session_not_live", f"the session is {exc.status}") from None
        except recorder_db.AlreadyRecording:
            raise ChannelError("already_recording", "the session is being recorded") from None
        except OSError as exc:
            raise ChannelError("recorder_unavailable", f"cannot record: {exc}") from None
    elif action == "stop":
        if recorder.recording_of(room.session_id) is None:
            raise ChannelError("not_recording", "the session is not being recorded")
        try:
            await recorder.stop_recording(room.session_id, "stopped by staff")
        except KeyError:  # stopped meanwhile
            raise ChannelError("not_recording", "the session is not being recorded") from None
    else:
        raise ChannelError("validation_error", 'action must be "start" or "stop"')


def _hand(participant: Participant) -> dict[str, Any]:
    at = participant.hand_raised_at
    return {
        "type": "hand",
        "user_id": str(participant.user_id),
        "raised": at is not None,
        "at": at.isoformat() if at else None,
    }


async def is_removed(app: web.Application, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Was this user removed from this live session by its teacher (in any process)? For
    the SFU's room access (``vtp.sfu.access.room_access``), so that a removed user's
    client cannot rejoin the room by itself either."""
    return await removals.reason(app[REDIS], session_id, user_id) is not None


async def remove_participant(
    app: web.Application, room: LiveRoom, target: Participant, *, by: str, reason: str
) -> None:
    """The target is told why, its channel closes, and its SFU peers leave the room."""
    await removals.mark(app[REDIS], room.session_id, target.user_id, reason)
    for conn in list(target.connections):
        conn.send({"type": "removed", "by": by, "reason": reason})
        conn.close(CLOSE_FORBIDDEN, "removed")
    await _leave_sfu(app, room.room_name, target.user_id, f"removed: {reason}")


async def _leave_sfu(app: web.Application, room_name: str, user_id: uuid.UUID, reason: str) -> None:
    try:
        from vtp.sfu.members import MEMBERS
    except ImportError:  # pragma: no cover - the SFU is part of the app
        return
    members = app.get(MEMBERS)
    if members is None:
        return
    for member in members.in_room(room_name):
        if member.user_id == user_id:
            try:
                await member.peer.leave(reason)
            except Exception:
                logger.exception("removing peer %s failed", member.peer.id)


async def end_room(room: LiveRoom, *, by: str) -> None:
    room.ended = True
    room.broadcast({"type": "ended", "by": by})
    for participant in room.participants.values():
        for conn in participant.connections:
            conn.close(WSCloseCode.OK, "session ended")


# --- chat delivery -------------------------------------------------------------------------


def chat_hook(app: web.Application) -> ChatHook:
    async def deliver(event: dict[str, Any]) -> None:
        session_id = event.get("session_id")
        if not session_id:
            return
        room = app[LIVE_ROOMS].rooms.get(uuid.UUID(session_id))
        if room is None:
            return
        message = dict(event["message"])
        author = message.get("author_id")
        if author and not message.get("author_name"):
            participant = room.participants.get(uuid.UUID(author))
            if participant is not None:
                message["author_name"] = participant.display
            else:
                user = await get_user(app[DB], uuid.UUID(author))
                message["author_name"] = user.display_name if user else None
        room.broadcast(
            {"type": "chat", "event": str(event["type"]).removeprefix("chat."), "message": message}
        )

    return deliver


async def _close_all(app: web.Application) -> None:
    for room in list(app[LIVE_ROOMS].rooms.values()):
        for participant in list(room.participants.values()):
            for conn in list(participant.connections):
                with contextlib.suppress(Exception):
                    await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


async def _recorder_ctx(app: web.Application) -> AsyncIterator[None]:
    """Tell the classroom when the recorder starts or stops one of its sessions
    (runs after the recorder's own context, registered before this one)."""
    recorder = app.get(RECORDER)

    def changed(change: RecordingChanged) -> None:
        room = app[LIVE_ROOMS].rooms.get(change.session_id)
        if room is not None:
            state = recording_state(app, change.session_id)
            state["active"] = change.state == "started"
            room.broadcast({"type": "recording", "recording": state, "reason": change.reason})

    remove = recorder.add_listener(changed) if recorder is not None else None
    try:
        yield
    finally:
        if remove is not None:
            remove()


def setup(app: web.Application) -> None:
    app[LIVE_ROOMS] = LiveRooms()
    app.cleanup_ctx.append(_recorder_ctx)
    hooks = app.get(CHAT_HOOKS)
    if hooks is None:
        hooks = []
        app[CHAT_HOOKS] = hooks
    hooks.append(chat_hook(app))
    app.on_shutdown.append(_close_all)
    app.add_routes(routes)
