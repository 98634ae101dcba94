"""The classroom live channel: ``GET /api/v1/sessions/{session_id}/live`` (WebSocket).

The SFU signalling protocol (docs/protocol.md) moves media; a classroom needs more that
it does not carry yet: raised hands, the teacher muting or removing a student, each
participant's microphone/camera state, live chat delivery, the recording state, ending
the session for everyone, and who is present since when. The browser client opens this
channel next to the SFU WebSocket. Everything here is additive and could move into the
signalling protocol as messages of its own.

Protocol (JSON frames with a ``type``; every message is a pydantic model of
:mod:`vtp.web.live_messages`, one per type: fields the server does not know are ignored,
a field of the wrong type gets ``validation_error``, an unknown type ``unknown_type``).
The channel itself - authentication, renewal, authority rechecks, the bounded outgoing
queue, heartbeats, rate limits, close codes - is :mod:`vtp.channel.socket`, shared with
the SFU signalling socket:

client -> server
  ``auth {token}``                 first, within 10 s (browsers cannot set headers); sent
                                   again with a fresh access token of the same user
                                   before the current one expires (renewal; answered
                                   ``authenticated {user_id, expires_at}``), else the
                                   channel closes with 4401 ``token_expired``
  ``hand {raised}``                raise or lower my hand
  ``lower-hand {user_id}``         presenter: lower someone's hand
  ``media {audio, video, screen}`` my publishing state, shown to everyone
  ``mute {user_id, kind?, locked?}``
                                   presenter: the server stops forwarding that
                                   participant's ``kind`` ("audio", the default, or
                                   "video": a video stop) from every SFU peer of theirs in
                                   the room, and from publications they start later, until
                                   unmuted; ``locked: true`` means only a presenter may
                                   unmute (:mod:`vtp.web.muting`). Their page also turns
                                   the track off
  ``unmute {kind?, user_id?}``     the muted participant asks to be heard again (refused
                                   with ``mute_locked`` when the teacher locked it); a
                                   presenter unmutes ``user_id`` (lifting a lock)
  ``remove {user_id, reason?}``    presenter: the participant - on this channel or only in
                                   the SFU room, by any way in (WebSocket, REST, WHIP,
                                   WHEP) - is told why, their SFU peers leave the room, and
                                   this channel, the SFU room, the join ticket and session
                                   chat refuse them until the session ends (kept in Redis:
                                   every VTP process, and a restarted one, knows)
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
  ``media {user_id, audio, video, screen}``; ``muted {user_id, kind, by, locked}`` and
  ``unmuted {user_id, kind, by}`` (to everyone); ``removed {by, reason}`` (to their
  target); ``chat {event, message}`` (created/edited/deleted, from the chat
  API's hooks); ``role {user_id, role}`` (a participant's role changed, e.g. a TA made a
  student lost the presenter's controls); ``ended {by}`` (when the session ends through
  the API, in any process, or after ``end``); ``authenticated {user_id, expires_at}``;
  ``pong``; ``error {error: {code, message, details}}``.

A participant is a user (several tabs count once): ``{user_id, display, role, since,
hand_raised_at, audio, video, screen, muted: {audio, video}, channel}``; ``since`` is when
their current stay began; ``muted.audio``/``muted.video`` is ``{by, locked}`` or null;
``channel`` is false for a user who is in the session's SFU room without this channel
(announced with ``participant-joined``/``participant-left`` too, so the teacher can
remove them). Attendance rows (``session_participants``) are written by
:mod:`vtp.web.presence` when a user's first way in (this channel or an SFU peer) opens
and closed when their last one closes.

Authority is followed while the channel is open, not checked once: every change of
authority concerning the user or the session (:mod:`vtp.auth.authority`: logout, token
revocation, unenrolment, course or site role change, removal in any process, session
end) re-checks the token, the membership, the removal list and the role at once. A
presenter's controls (``lower-hand``, ``mute``, ``remove``, ``record``, ``end``) also
re-check the sender's current course role: hosting a session gives no power of its own.

Close codes: 1012 (after an ``error`` ``node_gone``: with several nodes, the node serving
the class of a relayed channel is gone; connect again), 4307 (after an ``error``
``room_elsewhere``: a relayed channel whose class is on yet another node now - its SFU
room was placed again - and ``details`` hold ``node_id``, ``node_url`` and ``url``, that
node's live channel for this session), 4401
(authentication failed; the token expired without renewal or was
revoked), 4403 (not a member, no longer a member, or removed), 4409 (the session is not
live), 4429 (``rate_limited``: this socket sent more than
``VTP_LIVE_MESSAGE_RATE``/``VTP_LIVE_MESSAGE_BURST`` allow, or its user more than twice
that; or ``too_many_sessions``: the user has ``VTP_MAX_WEBSOCKETS_PER_USER`` sockets open),
1008 (a receiver so far behind that ``MAX_QUEUED`` messages wait for it), 1000 after
``ended``.

A flood costs the sender only: its socket is closed, and what it managed to send is
coalesced at every receiver (a ``hand`` or ``media`` message replaces the same user's
older one still waiting), so no receiver falls behind on state it would throw away.

Participants, hands and media state live in this process: one node serves a class, the
one its SFU room is placed on (:mod:`vtp.signalling.placement`). A channel opened on
another node is relayed there (:mod:`vtp.channel.relay`; the room's node's end is
:mod:`vtp.web.live_relayed`): that node keeps the socket, after the same admission checks,
and the participant is the room's node's like any other, so whichever node a
participant's socket reached, everyone of a class meets on one node. Removals are in
Redis (:mod:`vtp.auth.removals`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSCloseCode, web

from vtp.api.access import public
from vtp.api.chat import CHAT_HOOKS, ChatHook
from vtp.api.endpoint import endpoint
from vtp.api.errors import ApiError
from vtp.appkeys import AUTHORITY, CONFIG, DB, RECORDER, REDIS
from vtp.auth import removals
from vtp.auth.authority import AuthorityChange
from vtp.auth.tokens import TokenError
from vtp.channel.messages import MessageError, ServerMessage
from vtp.channel.socket import CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, Channel, Rules, Socket
from vtp.cluster.nodes import NodeInfo
from vtp.db import recordings as recordings_db
from vtp.db import sessions as sessions_db
from vtp.db.users import get_user
from vtp.limits.tokenbucket import SendLimits
from vtp.recorder.service import RecordingChanged
from vtp.signalling.members import MEMBERS, Member
from vtp.signalling.placement import place_room
from vtp.web import chat_relay, muting
from vtp.web import live_messages as lm
from vtp.web.participation import hand_raised
from vtp.web.presence import PRESENCE, presence_ctx

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

LIVE_PATH = "/api/v1/sessions/{session_id}/live"
AUTH_TIMEOUT_S = 10.0
HEARTBEAT_S = 10.0
MAX_MESSAGE_BYTES = 16 * 1024
MAX_QUEUED = 512
CLOSE_NOT_LIVE = 4409
CLOSE_ELSEWHERE = 4307  # after an error room_elsewhere: reconnect to details.url
NO_RECORDER = "Recording is not available: no recorder runs on this server."


def _now() -> datetime:
    return datetime.now(UTC)


class ChannelError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Connection(Channel):
    """One open live-channel WebSocket of one user (the channel framework:
    :mod:`vtp.channel.socket`)."""

    rules = Rules(
        max_message_bytes=MAX_MESSAGE_BYTES,
        max_queued=MAX_QUEUED,
        too_slow_code=WSCloseCode.POLICY_VIOLATION,
        heartbeat_s=HEARTBEAT_S,
        auth_timeout_s=AUTH_TIMEOUT_S,
    )
    messages = lm.CLIENT
    relay_kind = "live"

    def __init__(self, app: web.Application, ws: Socket) -> None:
        super().__init__(app, ws, app[SEND_LIMITS])
        self.display = ""
        self.role = "viewer"  # "presenter" | "viewer"
        self.course_id: uuid.UUID | None = None
        self.room: LiveRoom | None = None

    @property
    def is_admin(self) -> bool:
        return self.principal is not None and self.principal.role == "admin"

    def error_message(
        self, code: str, message: str, details: Any, request_id: str | None
    ) -> ServerMessage:
        return lm.ErrorMessage.of(code, message, details)

    def authenticated_message(self, request_id: str | None) -> ServerMessage:
        assert self.principal is not None
        return lm.Authenticated(
            user_id=str(self.principal.user_id), expires_at=self.principal.expires_at
        )

    def refusal(self, exc: Exception) -> MessageError | None:
        if isinstance(exc, ChannelError | muting.MuteRefused):
            return MessageError(exc.code, exc.message)
        return None

    async def handle(self, message: Any) -> None:
        assert self.room is not None
        await _handle(self.app, self.room, self, message)

    async def on_authority(self, change: AuthorityChange) -> None:
        if self.room is not None:
            await _recheck(self.app, self.room, self, change)

    async def open(self) -> bool:
        """Authenticate (the first message); False: refused, the channel closes."""
        return await self.authenticate() is not None

    def opened(self) -> None:
        """The client is in the class (``ready`` is sent)."""

    def _send_elsewhere(self, node: NodeInfo, session_id: uuid.UUID) -> None:
        """The class is on another node and this socket cannot be relayed there (it is
        relayed already: the room moved meanwhile): an error ``room_elsewhere`` naming
        that node's live channel, then close 4307."""
        url = node.url + LIVE_PATH.format(session_id=session_id)
        details = {"node_id": node.id, "node_url": node.url, "url": url}
        self.error(
            "room_elsewhere", f"this class is served by node {node.id}: connect to {url}", details
        )
        self.close(CLOSE_ELSEWHERE, "room_elsewhere")

    async def run(self, session_id: uuid.UUID) -> None:
        self.start_writer()
        try:
            if not await self.open():
                return
            ticket = await _admit(self, session_id)
            if ticket is None:
                return
            # The class's live state (participants, hands, SFU members, recorder) is kept
            # beside its room: on another node's room, this socket is relayed there.
            try:
                node = await place_room(self.app, ticket.room_name)
            except ApiError as exc:  # no live node (cluster only)
                self.refuse(CLOSE_NOT_LIVE, exc.code, exc.message)
                return
            if node is not None and not self.relays():
                self._send_elsewhere(node, session_id)
                return
            if not await self.take_slot():
                return
            if node is not None:
                try:
                    await self.relay(node, {"session_id": str(session_id)})
                    if self.link is not None and not self.closing:
                        await self.serve()
                finally:
                    self.hang_up_link()
                return
            room = self.room = self.app[LIVE_ROOMS].get(session_id, ticket.room_name)
            try:  # (entering inside: a cancelled entry still leaves)
                await _enter(self.app, room, self)
                self.opened()
                self.follow_authority(lambda: (self.course_id, room.session_id))
                await self.serve()
            finally:
                self.stop_following()
                self.close(WSCloseCode.OK, "bye")
                await asyncio.shield(_exit(self.app, room, self, "left"))
        finally:
            self.close(WSCloseCode.OK, "bye")
            await self.drain()


@dataclass(eq=False)
class Participant:
    user_id: uuid.UUID
    display: str
    role: str
    since: datetime
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
            "channel": True,
        }


@dataclass(frozen=True, slots=True)
class Target:
    """Whom a presenter's control applies to: a participant of the channel or a user who
    is only in the session's SFU room."""

    user_id: uuid.UUID
    display: str
    role: str
    participant: Participant | None


@dataclass(eq=False)
class LiveRoom:
    session_id: uuid.UUID
    room_name: str
    participants: dict[uuid.UUID, Participant] = field(default_factory=dict)
    ended: bool = False

    def broadcast(
        self,
        message: ServerMessage,
        *,
        skip: Connection | None = None,
        key: tuple[str, uuid.UUID] | None = None,
    ) -> None:
        data = message.to_json()  # once for every receiver
        for participant in self.participants.values():
            for conn in participant.connections:
                if conn is not skip:
                    conn.send(data, key)


class LiveRooms:
    def __init__(self) -> None:
        self.rooms: dict[uuid.UUID, LiveRoom] = {}

    def get(self, session_id: uuid.UUID, room_name: str) -> LiveRoom:
        room = self.rooms.get(session_id)
        if room is None:
            room = self.rooms[session_id] = LiveRoom(session_id, room_name)
        return room

    def by_room_name(self, room_name: str) -> LiveRoom | None:
        for room in self.rooms.values():
            if room.room_name == room_name:
                return room
        return None

    def forget_if_empty(self, room: LiveRoom) -> None:
        # (whom the teacher removed is kept in Redis, not here: see vtp.auth.removals)
        if not room.participants:
            self.rooms.pop(room.session_id, None)


LIVE_ROOMS = web.AppKey("web_live_rooms", LiveRooms)


def send_class_elsewhere(app: web.Application, room_name: str, node: NodeInfo | None) -> int:
    """This node gives the class's room up (draining): its live channels are sent to
    ``node`` (``room_elsewhere``, then 4307, as a channel opened on the wrong node is),
    or, with no node to name or when another node holds the socket (it relays it on, and
    is not draining), closed with 1012 (the client reconnects to its page's node).
    Returns how many channels were closed."""
    room = app[LIVE_ROOMS].by_room_name(room_name)
    if room is None:
        return 0
    conns = [c for p in room.participants.values() for c in p.connections]
    for conn in conns:
        if node is None or conn.through_door:
            conn.close(WSCloseCode.SERVICE_RESTART, "node draining")
            continue
        url = node.url + LIVE_PATH.format(session_id=room.session_id)
        details = {"node_id": node.id, "node_url": node.url, "url": url}
        message = f"this class moved to node {node.id}: connect to {url}"
        conn.error("room_elsewhere", message, details)
        conn.close(CLOSE_ELSEWHERE, "room_elsewhere")
    return len(conns)


SEND_LIMITS = web.AppKey("web_live_send_limits", SendLimits)


def participant_json(
    app: web.Application, room: LiveRoom, participant: Participant
) -> dict[str, Any]:
    data = participant.to_json()
    data["muted"] = muting.state(app, room.room_name, participant.user_id)
    return data


def _sfu_members(app: web.Application, room_name: str, user_id: uuid.UUID) -> list[Member]:
    members = app.get(MEMBERS)
    if members is None:
        return []
    return [m for m in members.in_room(room_name) if m.user_id == user_id]


def _sfu_only_json(app: web.Application, room_name: str, member: Member) -> dict[str, Any]:
    """A user in the SFU room without this channel, as a participant."""
    return {
        "user_id": str(member.user_id),
        "display": member.display,
        "role": member.role,
        "since": _now().isoformat(),
        "hand_raised_at": None,
        "audio": False,
        "video": False,
        "screen": False,
        "muted": muting.state(app, room_name, member.user_id),
        "channel": False,
    }


def _everyone_json(app: web.Application, room: LiveRoom) -> list[dict[str, Any]]:
    people = [participant_json(app, room, p) for p in room.participants.values()]
    members = app.get(MEMBERS)
    if members is not None:
        seen: set[uuid.UUID] = set(room.participants)
        for member in members.in_room(room.room_name):
            if member.user_id not in seen:
                seen.add(member.user_id)
                people.append(_sfu_only_json(app, room.room_name, member))
    return people


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


async def _admit(conn: Connection, session_id: uuid.UUID) -> sessions_db.JoinTicket | None:
    """May the authenticated user be in this live session? None after a refusal."""
    app = conn.app
    principal = conn.principal
    assert principal is not None
    pool = app[DB]
    ticket = await sessions_db.join_ticket(
        pool,
        user_id=principal.user_id,
        is_admin=conn.is_admin,
        session_id=session_id,
    )
    if ticket is None:
        conn.refuse(CLOSE_FORBIDDEN, "not_found", "no such session")
        return None
    if ticket.status != "live":
        conn.refuse(CLOSE_NOT_LIVE, "session_not_live", f"the session is {ticket.status}, not live")
        return None
    reason = await removals.reason(app[REDIS], session_id, principal.user_id)
    if reason is not None:
        conn.refuse(CLOSE_FORBIDDEN, "removed", f"you were removed from this class: {reason}")
        return None
    user = await get_user(pool, principal.user_id)
    if user is None or not user.is_active:
        conn.refuse(CLOSE_UNAUTHORIZED, "account_disabled", "this account no longer exists")
        return None
    conn.display = user.display_name
    conn.role = ticket.role
    conn.course_id = ticket.course_id
    return ticket


@routes.get(LIVE_PATH)
@public  # authenticates inside: a first "auth" message (browsers cannot set headers)
@endpoint(errors=(404,))
async def live_channel(request: web.Request) -> web.StreamResponse:
    """The classroom live channel (WebSocket): hands, teacher controls, media state,
    chat delivery and presence for one live session. See vtp/web/live.py."""
    try:
        session_id = uuid.UUID(request.match_info["session_id"])
    except ValueError:
        raise ApiError(404, "not_found", "no such session") from None
    app = request.app
    ws = Connection.response(request)
    conn = Connection(app, ws)
    await ws.prepare(request)
    async with conn.serving():
        await conn.run(session_id)
    return ws


async def _enter(app: web.Application, room: LiveRoom, conn: Connection) -> None:
    participant = room.participants.get(conn.user_id)
    first = participant is None
    if participant is None:
        participant = Participant(conn.user_id, conn.display, conn.role, since=_now())
        room.participants[conn.user_id] = participant
    participant.connections.add(conn)
    if first:
        writing = app[PRESENCE].arrive(
            room.room_name, conn.user_id, "presenter" if conn.role == "presenter" else "viewer"
        )
        if writing is not None:
            await asyncio.shield(writing)
    conn.send(
        lm.Ready(
            you={"user_id": str(conn.user_id), "role": conn.role, "display": conn.display},
            participants=_everyone_json(app, room),
            recording=recording_state(app, room.session_id),
            now=_now().isoformat(),
        )
    )
    if first:
        room.broadcast(
            lm.ParticipantJoined(participant=participant_json(app, room, participant)), skip=conn
        )


async def _exit(app: web.Application, room: LiveRoom, conn: Connection, reason: str) -> None:
    participant = room.participants.get(conn.user_id)
    if participant is None or conn not in participant.connections:
        return
    participant.connections.discard(conn)
    if participant.connections:
        return
    del room.participants[conn.user_id]
    room.broadcast(lm.ParticipantLeft(user_id=str(conn.user_id), reason=reason))
    still = _sfu_members(app, room.room_name, conn.user_id)
    if still:  # (still in the SFU room without this channel)
        only = _sfu_only_json(app, room.room_name, still[0])
        room.broadcast(lm.ParticipantJoined(participant=only))
    app[LIVE_ROOMS].forget_if_empty(room)
    writing = app[PRESENCE].depart(room.room_name, conn.user_id)
    if writing is not None:
        await writing


def _target(app: web.Application, room: LiveRoom, user_id: uuid.UUID) -> Target:
    """A participant of this channel, or a user in the session's SFU room by any way in."""
    participant = room.participants.get(user_id)
    if participant is not None:
        return Target(user_id, participant.display, participant.role, participant)
    members = _sfu_members(app, room.room_name, user_id)
    if not members:
        raise ChannelError("not_found", "that participant is not in the class")
    return Target(user_id, members[0].display, members[0].role, None)


async def _presenter(app: web.Application, room: LiveRoom, conn: Connection) -> None:
    """Only a presenter, by the course role held now (a TA demoted while hosting is not)."""
    if conn.role == "presenter":
        ticket = await sessions_db.join_ticket(
            app[DB], user_id=conn.user_id, is_admin=conn.is_admin, session_id=room.session_id
        )
        _set_role(room, conn, ticket.role if ticket is not None else "viewer")
    if conn.role != "presenter":
        raise ChannelError("forbidden", "only the teacher may do this")


def _set_role(room: LiveRoom, conn: Connection, role: str) -> None:
    if conn.role == role:
        return
    conn.role = role
    participant = room.participants.get(conn.user_id)
    if participant is not None and participant.role != role:
        participant.role = role
        room.broadcast(lm.Role(user_id=str(conn.user_id), role=role))


# --- authority while the channel is open ----------------------------------------------------


async def _recheck(
    app: web.Application, room: LiveRoom, conn: Connection, change: AuthorityChange
) -> None:
    try:
        await conn.verify_again()
    except TokenError as exc:
        conn.refuse(CLOSE_UNAUTHORIZED, exc.code, f"{exc.message} ({change.reason})")
        return
    ticket = await sessions_db.join_ticket(
        app[DB], user_id=conn.user_id, is_admin=conn.is_admin, session_id=room.session_id
    )
    if ticket is None:
        conn.refuse(
            CLOSE_FORBIDDEN, "forbidden", f"you are no longer in this class ({change.reason})"
        )
        return
    if ticket.status != "live":
        conn.send(lm.Ended(by=change.by))
        conn.close(WSCloseCode.OK, "session ended")
        return
    reason = await removals.reason(app[REDIS], room.session_id, conn.user_id)
    if reason is not None:
        conn.send(lm.Removed(by=change.by, reason=reason))
        conn.close(CLOSE_FORBIDDEN, "removed")
        return
    user = await get_user(app[DB], conn.user_id)
    if user is None or not user.is_active:
        conn.refuse(CLOSE_UNAUTHORIZED, "account_disabled", "this account no longer exists")
        return
    _set_role(room, conn, ticket.role)


async def _handle(
    app: web.Application, room: LiveRoom, conn: Connection, msg: lm.ClientMessage
) -> None:
    """One client message (``auth``, renewal, is the channel's: vtp.channel.socket)."""
    me = room.participants[conn.user_id]
    if isinstance(msg, lm.Ping):
        conn.send(lm.Pong())
    elif isinstance(msg, lm.Hand):
        hand_raised(app, room.room_name, me.user_id, me.hand_raised_at, msg.raised)
        me.hand_raised_at = _now() if msg.raised else None
        room.broadcast(_hand(me), key=("hand", me.user_id))
    elif isinstance(msg, lm.LowerHand):
        await _presenter(app, room, conn)
        raised = _target(app, room, msg.user_id).participant
        if raised is None:
            raise ChannelError("not_found", "that participant has no hand to lower")
        raised.hand_raised_at = None
        room.broadcast(_hand(raised), key=("hand", raised.user_id))
    elif isinstance(msg, lm.Media):
        me.audio, me.video, me.screen = msg.audio, msg.video, msg.screen
        room.broadcast(
            lm.MediaState(
                user_id=str(me.user_id), audio=me.audio, video=me.video, screen=me.screen
            ),
            key=("media", me.user_id),
        )
    elif isinstance(msg, lm.Mute):
        await _presenter(app, room, conn)
        target = _target(app, room, msg.user_id)
        room.broadcast(
            muting.mute(
                app, room.room_name, target.user_id, msg.kind, by=conn.display, locked=msg.locked
            )
        )
    elif isinstance(msg, lm.Unmute):
        if msg.user_id is None or msg.user_id == conn.user_id:
            user_id = conn.user_id
        else:
            await _presenter(app, room, conn)
            user_id = _target(app, room, msg.user_id).user_id
        room.broadcast(
            muting.unmute(
                app,
                room.room_name,
                user_id,
                msg.kind,
                by=conn.display,
                presenter=conn.role == "presenter",
            )
        )
    elif isinstance(msg, lm.Remove):
        await _presenter(app, room, conn)
        target = _target(app, room, msg.user_id)
        if target.role == "presenter":
            raise ChannelError("forbidden", "a teacher cannot be removed")
        reason = (msg.reason or "removed by the teacher")[:200]
        await remove_participant(app, room, target, by=conn.display, reason=reason)
    elif isinstance(msg, lm.Record):
        await _presenter(app, room, conn)
        await _record(app, room, conn, msg.action)
    elif isinstance(msg, lm.End):
        await _presenter(app, room, conn)
        session = await sessions_db.get_session(app[DB], room.session_id)
        if session is None or session.status == "live":
            raise ChannelError("session_live", "end the session with the API first")
        await end_room(room, by=conn.display)


async def _record(app: web.Application, room: LiveRoom, conn: Connection, action: Any) -> None:
    """Start or stop recording; the recorder's listener then tells everyone."""
    recorder = app.get(RECORDER)
    if recorder is None:
        raise ChannelError("recorder_unavailable", NO_RECORDER)
    if action == "start":
        try:
            await recorder.start_recording(room.session_id, conn.user_id)
        except recordings_db.NotLive as exc:
            raise ChannelError("session_not_live", f"the session is {exc.status}") from None
        except recordings_db.AlreadyRecording:
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


def _hand(participant: Participant) -> lm.HandState:
    at = participant.hand_raised_at
    return lm.HandState(
        user_id=str(participant.user_id),
        raised=at is not None,
        at=at.isoformat() if at else None,
    )


async def is_removed(app: web.Application, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Was this user removed from this live session by its teacher (in any process)? For
    the SFU's room access (``vtp.signalling.access.room_access``), so that a removed user's
    client cannot rejoin the room by itself either."""
    return await removals.reason(app[REDIS], session_id, user_id) is not None


async def remove_participant(
    app: web.Application, room: LiveRoom, target: Target, *, by: str, reason: str
) -> None:
    """The target is told why, its channel closes, and its SFU peers (of any kind) leave
    the room."""
    await removals.mark(app[REDIS], room.session_id, target.user_id, reason)
    if target.participant is not None:
        for conn in list(target.participant.connections):
            conn.send(lm.Removed(by=by, reason=reason))
            conn.close(CLOSE_FORBIDDEN, "removed")
    await _leave_sfu(app, room.room_name, target.user_id, f"removed: {reason}")
    # The target's sockets and peers in other processes (sharing the Redis) go too.
    bus = app.get(AUTHORITY)
    if bus is not None:
        await bus.publish(
            AuthorityChange(
                f"removed: {reason}", user_id=target.user_id, session_id=room.session_id, by=by
            )
        )


async def _leave_sfu(app: web.Application, room_name: str, user_id: uuid.UUID, reason: str) -> None:
    for member in _sfu_members(app, room_name, user_id):
        try:
            await member.peer.leave(reason)
        except Exception:
            logger.exception("removing peer %s failed", member.peer.id)


async def end_room(room: LiveRoom, *, by: str) -> None:
    room.ended = True
    room.broadcast(lm.Ended(by=by))
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
        room.broadcast(lm.Chat(event=str(event["type"]).removeprefix("chat."), message=message))

    return deliver


async def _recorder_ctx(app: web.Application) -> AsyncIterator[None]:
    """Tell the classroom when the recorder starts or stops one of its sessions
    (runs after the recorder's own context, registered before this one)."""
    recorder = app.get(RECORDER)

    def changed(change: RecordingChanged) -> None:
        room = app[LIVE_ROOMS].rooms.get(change.session_id)
        if room is not None:
            state = recording_state(app, change.session_id)
            state["active"] = change.state == "started"
            room.broadcast(lm.Recording(recording=state, reason=change.reason))

    remove = recorder.add_listener(changed) if recorder is not None else None
    try:
        yield
    finally:
        if remove is not None:
            remove()


async def _sfu_members_ctx(app: web.Application) -> AsyncIterator[None]:
    """Announce users who enter or leave the session's SFU room without this channel
    (after the SFU members' context, registered before this one)."""
    members = app.get(MEMBERS)

    def changed(member: Member, present: bool) -> None:
        room = app[LIVE_ROOMS].by_room_name(member.room)
        if room is None or member.user_id in room.participants:
            return
        if any(m is not member for m in _sfu_members(app, member.room, member.user_id)):
            return  # not their first or last peer
        if present:
            only = _sfu_only_json(app, member.room, member)
            room.broadcast(lm.ParticipantJoined(participant=only))
        else:
            room.broadcast(lm.ParticipantLeft(user_id=str(member.user_id), reason="left"))

    remove = members.add_watcher(changed) if members is not None else None
    try:
        yield
    finally:
        if remove is not None:
            remove()


def setup(app: web.Application) -> None:
    app[LIVE_ROOMS] = LiveRooms()
    config = app[CONFIG]
    app[SEND_LIMITS] = SendLimits(config.live_message_rate, config.live_message_burst)
    app.cleanup_ctx.append(presence_ctx)
    app.cleanup_ctx.append(_sfu_members_ctx)
    app.cleanup_ctx.append(_recorder_ctx)
    hooks = app.get(CHAT_HOOKS)
    if hooks is None:
        hooks = []
        app[CHAT_HOOKS] = hooks
    deliver = chat_hook(app)
    hooks.append(deliver)
    app.cleanup_ctx.append(chat_relay.relay_ctx(deliver))  # (with VTP_CLUSTER only)
