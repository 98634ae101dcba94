"""WebSocket signalling at ``GET /api/v1/sfu/ws`` (protocol: docs/protocol.md).

One WebSocket is one peer of at most one room at a time. Authentication: an
``Authorization: Bearer`` header on the upgrade request (checked before upgrading: a bad
token gets a 401 JSON error), or, for browsers that cannot set headers on a WebSocket,
an ``auth`` message first (a bad token gets an ``error`` message and close code 4401).
Tokens are not accepted in the URL: URLs end up in logs, proxies and browser history.

Authority is not checked at join only. The session watches its user's changes of
authority (:mod:`vtp.auth.authority`): when one comes, the token is verified again (fails:
close 4401) and the room grant asked again (:mod:`vtp.signalling.rights`: refused -> ``left``
and close 4403; another role or publish right -> its publications close if it may no
longer publish, and ``grant`` tells the client). A token that expires without the client
sending ``auth`` with a fresh one closes the socket with 4401 (``token_expired``).

Client messages are handled one at a time, in order; replies and room events go through
one outgoing queue so the client sees them in the order they happened. Nothing a client
sends can break the room: every failure becomes an ``error`` message to that client.
Leaving (``leave``), or closing the WebSocket (a close frame: the tab closed), ends the
peer at once. A WebSocket that drops instead, without a close frame (the client's network
changed: Wi-Fi to mobile; the heartbeat goes unanswered), leaves its peer in the room for
``VTP_SFU_RESUME_S``:
a ``join`` on a new socket with the ``resume_token`` of the last ``joined`` takes the same
peer back, its publications and subscriptions intact (the client then restarts ICE on
them, ``restart-ice``); a socket still open for it is closed (4409). Connections the
resuming client does not claim (``connections``: a reply the dropped socket never
delivered), and any a request still in flight on the old socket makes, close at once.
Without a resume in time the peer leaves, and its publications end for every subscriber.

With several nodes, a ``join`` of a room another node serves is relayed there
(:mod:`vtp.channel.relay`): this session keeps the socket, and the room's node runs a
session of this class for it (:mod:`vtp.signalling.relayed`) until it holds no room.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, web

from vtp.api.access import public
from vtp.api.endpoint import endpoint
from vtp.api.errors import ApiError, unauthorized
from vtp.api.middleware import bearer_token
from vtp.appkeys import CONFIG, DB, SFU_KEY, TOKENS
from vtp.auth.authority import AuthorityChange, Scope
from vtp.auth.principal import Principal
from vtp.auth.tokens import TokenError
from vtp.channel import slots
from vtp.channel.messages import MessageError, ServerMessage
from vtp.channel.socket import (
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHORIZED,
    OPEN_CHANNELS,
    Channel,
    Rules,
    Socket,
)
from vtp.db.users import get_user
from vtp.limits.tokenbucket import SendLimits
from vtp.sfu import DownConnection, Room, SfuError, UpConnection, events, restart_ice
from vtp.signalling import messages as m
from vtp.signalling import quotas, rights
from vtp.signalling.access import RoomGrant, room_access
from vtp.signalling.members import MEMBERS, Member, MemberJoined
from vtp.signalling.placement import RoomElsewhere, ensure_here
from vtp.signalling.refusals import sfu_error_code

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

WS_PATH = "/api/v1/sfu/ws"
AUTH_TIMEOUT_S = 10.0
HEARTBEAT_S = 10.0
KEEPALIVE_S = 0.5
MAX_MESSAGE_BYTES = 256 * 1024
MAX_QUEUED = 1024  # outgoing messages a client may fall behind by before it is dropped
MAX_PEERS_PER_USER = 8  # per room: WebSockets, REST, WHIP and WHEP sessions together
CLOSE_TOO_SLOW = 4408
CLOSE_RESUMED = 4409  # another socket resumed this one's peer
CLOSE_MOVED = 1012  # "service restart": after "reconnect", the node is draining


def member_info(member: Member) -> m.PeerInfo:
    return m.PeerInfo(
        peer_id=member.peer.id,
        user_id=str(member.user_id),
        display=member.display,
        role=member.role,
    )


async def join_room(
    app: web.Application,
    principal: Principal,
    room_name: str,
    *,
    path: str,
    cascade: bool = False,
) -> tuple[RoomGrant, str]:
    """Room access check and display name for a new peer; raises ApiError (and
    :class:`~vtp.signalling.placement.RoomElsewhere` when another node serves the room:
    ``path`` is the request to make there). ``cascade``: the peer only subscribes, so it
    may be served here from a cascade's copy of the room."""
    grant = await room_access(app, principal, room_name)
    if grant is None:
        raise ApiError(403, "forbidden", f"you may not join room {room_name!r}")
    await ensure_here(app, room_name, path, cascade=cascade)
    user = await get_user(app[DB], principal.user_id)
    if user is None or not user.is_active:
        raise unauthorized("account_disabled", "this account no longer exists")
    # No await from here to the caller's room.join(): the count cannot be raced.
    if app[MEMBERS].count(room_name, principal.user_id) >= MAX_PEERS_PER_USER:
        raise ApiError(
            429,
            "too_many_peers",
            f"you already have {MAX_PEERS_PER_USER} peers in room {room_name!r}",
        )
    quotas.check_room(app, principal.user_id, room_name)
    return grant, user.display_name


class Session(Channel):
    """One signalling WebSocket (the channel framework: :mod:`vtp.channel.socket`)."""

    rules = Rules(
        max_message_bytes=MAX_MESSAGE_BYTES,
        max_queued=MAX_QUEUED,
        too_slow_code=CLOSE_TOO_SLOW,
        heartbeat_s=HEARTBEAT_S,
        auth_timeout_s=AUTH_TIMEOUT_S,
    )
    messages = m.CLIENT
    relay_kind = "sfu"

    def __init__(self, app: web.Application, ws: Socket) -> None:
        super().__init__(app, ws, app[SEND_LIMITS])
        self.member: Member | None = None
        self._scope: Scope = (None, None)  # the member's (course_id, session_id)
        self._gone_room: str | None = None  # the room the server took this peer out of
        self._revoking = False
        self.resume_token: str | None = None  # (while it holds a member)
        self._parked: asyncio.Future[None] | None = None  # the leave after a drop

    # --- the protocol's forms -----------------------------------------------------------

    def error_message(
        self, code: str, message: str, details: Any, request_id: str | None
    ) -> ServerMessage:
        return m.ErrorMessage.of(code, message, details, request_id)

    def authenticated_message(self, request_id: str | None) -> ServerMessage:
        assert self.principal is not None
        return m.Authenticated(
            request_id=request_id, user_id=str(self.principal.user_id), role=self.principal.role
        )

    def refusal(self, exc: Exception) -> MessageError | None:
        if isinstance(exc, SfuError):
            return MessageError(sfu_error_code(exc), exc.message)
        if isinstance(exc, ApiError):
            return MessageError(exc.code, exc.message, exc.details)
        return None

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the socket; :attr:`principal` is set already when the upgrade request
        carried a valid ``Authorization`` header."""
        self.start_writer()
        keepalive = asyncio.create_task(self._keep_alive())
        try:
            if not await self.open():
                return
            self.follow_authority(lambda: self._scope)
            await self.serve()
        finally:
            self.hang_up_link()  # (the room's node ends the peer, or parks it)
            resume_s = self.app[CONFIG].sfu_resume_s
            parking = (
                self.member is not None
                and self.resume_token is not None
                and resume_s > 0
                and not self.said_goodbye
            )
            # (a parked peer's rights are still watched: it leaves when they end)
            self.stop_following(keep_watch=parking)
            self.keep_watching = parking
            keepalive.cancel()
            self.close(WSCloseCode.OK, "bye")
            if parking:
                # the socket dropped, not the peer: another may take it back a while
                self._parked = self.app[SFU_KEY].spawn(self._leave_after(resume_s))
            else:
                # aiohttp cancels the handler when the client's TCP connection goes:
                # the peer must still leave, so that runs in a task of its own.
                await asyncio.shield(self.app[SFU_KEY].spawn(self._leave("disconnected")))
            await self.drain()

    async def open(self) -> bool:
        """Authenticate (unless the upgrade request did) and take one of the user's
        slots; False: refused, the socket closes."""
        if self.principal is not None:
            self.send(self.authenticated_message(None))
        else:
            request_id = await self.authenticate()
            if request_id is None:
                return False
            self.send(self.authenticated_message(request_id or None))
        return await self.take_slot()

    async def _leave_after(self, delay_s: float) -> None:
        try:
            await asyncio.sleep(delay_s)
            await self._leave("disconnected")
        finally:
            self.stop_following()

    async def _recheck_parked(self, change: AuthorityChange) -> None:
        """A change of authority while the socket is gone: a parked peer whose right
        ended leaves now, not when the wait for a resume is over."""
        member = self.member
        if member is None:
            return
        try:
            principal = await self.app[TOKENS].verify_access(self.token)
            grant = await room_access(self.app, principal, member.room)
        except TokenError:
            grant = None
        if grant is None and self.member is member:
            await self._end_parked(change.reason)

    async def _end_parked(self, reason: str) -> None:
        await self._leave(f"access revoked: {reason}")
        if self._parked is not None and self._parked is not asyncio.current_task():
            self._parked.cancel()

    def _hand_over(self) -> Member | None:
        """Give this session's member to a session resuming it: this one stops serving
        it (its pending leave is off) and its socket, if still open, closes."""
        member, self.member = self.member, None
        self._scope = (None, None)
        if self.resume_token is not None:
            self.app[RESUMABLE].pop(self.resume_token, None)
            self.resume_token = None
        if self._parked is not None and self._parked is not asyncio.current_task():
            self._parked.cancel()
        self.keep_watching = False
        self.stop_following()  # (the resuming session watches its own)
        self.close(CLOSE_RESUMED, "resumed on another socket")
        return member

    # --- authority ----------------------------------------------------------------------

    async def on_expired(self) -> None:
        await self._revoke(
            CLOSE_UNAUTHORIZED,
            "token_expired",
            "the access token expired: send auth with a fresh one before it expires",
            "token expired",
        )

    async def on_authority(self, change: AuthorityChange) -> None:
        """Authority changed: is the token still good, and the room grant?"""
        if self._parked is not None:
            await self._recheck_parked(change)
            return
        if self._revoking:
            return
        # A peer the server already took out of its room (removed by the teacher, room
        # closed at the session's end) counts too: its right is what decides the socket.
        member = self.member
        room = member.room if member is not None else self._gone_room
        try:
            await self.verify_again()
        except TokenError as exc:
            await self._revoke(CLOSE_UNAUTHORIZED, exc.code, exc.message, change.reason)
            return
        if room is None:
            return
        assert self.principal is not None
        grant = await room_access(self.app, self.principal, room)
        if grant is None:
            await self._revoke(
                CLOSE_FORBIDDEN,
                "forbidden",
                f"you may no longer be in room {room!r}: {change.reason}",
                change.reason,
            )
        elif member is None:
            return
        elif self.member is member:
            await self._hold(member, grant, change.reason)

    async def _hold(self, member: Member, grant: RoomGrant, reason: str) -> None:
        """Apply a grant to this session's member; a change is told to the client first,
        before the publications it closes, so the client does not try them again."""
        if (grant.role, grant.may_publish) != (member.role, member.may_publish):
            self.send(
                m.Grant(
                    room=member.room, role=grant.role, may_publish=grant.may_publish, reason=reason
                )
            )
        await rights.apply_grant(member, grant, reason)

    async def _revoke(self, close_code: int, code: str, message: str, reason: str) -> None:
        """Leave the room, tell the client why, close the WebSocket."""
        if self._parked is not None:
            # the socket dropped while this was decided: end the peer it left behind
            await self._end_parked(reason)
            return
        if self.closing or self._revoking:
            return
        self._revoking = True
        member = self.member
        if member is not None:
            await self._leave(f"access revoked: {reason}")
            self.send(m.Left(room=member.room, reason=f"access revoked: {reason}"))
        self.refuse(close_code, code, message)

    async def _keep_alive(self) -> None:
        """An open WebSocket (answering the heartbeat) means the peer is there, even with
        no media connection: keep the SFU from removing it as silent."""
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            if self.member is not None:
                self.member.peer.touch()

    # --- incoming -----------------------------------------------------------------------

    async def handle(self, message: Any) -> None:
        if self.member is not None:
            self.member.peer.touch()
        await self._handlers[message.type](self, message)

    def _joined(self, request_id: str | None) -> Member:
        if self.member is None:
            raise m.MessageError("not_joined", "join a room first", None, request_id)
        return self.member

    async def _on_ping(self, msg: m.Ping) -> None:
        self.send(m.Pong(request_id=msg.request_id))

    async def _on_join(self, msg: m.Join) -> None:
        if self.member is not None:
            raise m.MessageError(
                "already_joined", f"already in room {self.member.room!r}", None, msg.request_id
            )
        assert self.principal is not None
        try:  # the token may have expired or been revoked since it was presented
            await self.verify_again()
        except TokenError as exc:
            raise m.MessageError(
                exc.code, f"{exc.message}: send auth with a fresh token", None, msg.request_id
            ) from None
        if msg.resume_token is not None and await self._resume(msg):
            return
        try:
            # (a WebSocket peer that does not mean to publish may be served here through a
            # cascade; REST, WHIP and WHEP sessions are served where the room lives)
            grant, display = await join_room(
                self.app, self.principal, msg.room, path=WS_PATH, cascade=not msg.publish
            )
        except RoomElsewhere as elsewhere:
            if not self.relays():
                raise
            await self.relay(elsewhere.node, {}, msg.model_dump_json(exclude_none=True))
            return
        if self.member is not None:  # a second join raced the first one's awaits
            raise m.MessageError("already_joined", "already in a room", None, msg.request_id)
        sfu = self.app[SFU_KEY]
        room = sfu.room(msg.room)
        # From here to the end, nothing awaits: no event can slip between the join, the
        # listing of what the room holds and the registration of this session's sink.
        peer = room.join(None, display)
        members = self.app[MEMBERS]
        member = Member(
            room=msg.room,
            peer=peer,
            user_id=self.principal.user_id,
            display=display,
            role=grant.role,
            may_publish=grant.may_publish,
            via="ws",
            sink=self._on_event,
            on_gone=self._on_gone,
        )
        peers = [
            member_info(other)
            if (other := members.get(msg.room, p.id)) is not None
            else m.PeerInfo(peer_id=p.id, user_id=None, display=p.display, role=None)
            for p in room.peers.values()
            if p is not peer
        ]
        members.add(member)
        self.member = member
        self._scope = (grant.course_id, grant.session_id)
        self._gone_room = None
        self.send(
            m.Joined(
                request_id=msg.request_id,
                room=msg.room,
                peer_id=peer.id,
                role=grant.role,
                may_publish=grant.may_publish,
                ice_servers=sfu.ice_servers(str(self.principal.user_id)),
                peers=peers,
                active_speaker=room.speaker.current,
                resume_token=self._resumable(),
            )
        )
        self._send_streams(room)

    # --- relayed to the room's node (vtp.channel.relay) ------------------------------------

    def unlinked(self, gone_room: str | None) -> None:
        """The room's node holds no room for this socket any more: it is served here."""
        self.link = None
        self._gone_room = gone_room
        if not self.closing:
            self.follow_authority(lambda: self._scope)

    def _resumable(self) -> str:
        """A new resume token for this session's member."""
        self.resume_token = secrets.token_urlsafe(24)
        self.app[RESUMABLE][self.resume_token] = self
        return self.resume_token

    async def _resume(self, msg: m.Join) -> bool:
        """Take back the peer of the session ``msg.resume_token`` names, if it is this
        user's in this room and the user may still be there; False: join afresh (the
        client learns from ``resumed``)."""
        assert self.principal is not None and msg.resume_token is not None
        old = self.app[RESUMABLE].get(msg.resume_token)
        if old is None or old is self or old.member is None:
            return False
        if (old.member.user_id, old.member.room) != (self.principal.user_id, msg.room):
            return False
        grant = await room_access(self.app, self.principal, msg.room)
        if grant is None:
            raise ApiError(403, "forbidden", f"you may not join room {msg.room!r}")
        if self.member is not None:  # a second join raced this one's await
            raise m.MessageError("already_joined", "already in a room", None, msg.request_id)
        member = old._hand_over() if self.app[RESUMABLE].get(msg.resume_token) is old else None
        if member is None or member.peer.left:
            return False
        member.sink, member.on_gone = self._on_event, self._on_gone
        self.member = member
        if msg.connections is not None:
            await _close_unclaimed(member, set(msg.connections))
        self._scope = (grant.course_id, grant.session_id)
        self._gone_room = None
        room = member.peer.room
        members = self.app[MEMBERS]
        self.send(
            m.Joined(
                request_id=msg.request_id,
                room=msg.room,
                peer_id=member.peer.id,
                role=member.role,
                may_publish=member.may_publish,
                ice_servers=self.app[SFU_KEY].ice_servers(str(self.principal.user_id)),
                peers=[
                    member_info(other)
                    if (other := members.get(msg.room, p.id)) is not None
                    else m.PeerInfo(peer_id=p.id, user_id=None, display=p.display, role=None)
                    for p in room.peers.values()
                    if p is not member.peer
                ],
                active_speaker=room.speaker.current,
                resume_token=self._resumable(),
                resumed=True,
                connections=list(member.peer.connections),
            )
        )
        self._send_streams(room)  # (what changed while no socket listened)
        await self._hold(member, grant, "the room's rules changed")
        return True

    def _send_streams(self, room: Room) -> None:
        for stream in room.streams():
            tracks = [m.TrackDesc(track_id=t.id, kind=t.kind, codec=t.codec) for t in stream.tracks]
            self.send(
                m.StreamAdded(
                    stream_id=stream.id, peer_id=stream.peer_id, label=stream.label, tracks=tracks
                )
            )
            for t in stream.tracks:
                self.send(
                    m.TrackAdded(
                        stream_id=stream.id, peer_id=stream.peer_id, track_id=t.id, kind=t.kind
                    )
                )

    async def _on_publish(self, msg: m.Publish) -> None:
        member = self._joined(msg.request_id)
        assert self.principal is not None
        # The right to publish is the one held now, not the one at join.
        try:
            await self.verify_again()
        except TokenError as exc:
            raise m.MessageError(
                exc.code, f"{exc.message}: send auth with a fresh token", None, msg.request_id
            ) from None
        grant = await room_access(self.app, self.principal, member.room)
        if self.member is not member:
            raise m.MessageError("not_joined", "join a room first", None, msg.request_id)
        if grant is None:
            await self._revoke(
                CLOSE_FORBIDDEN,
                "forbidden",
                f"you may no longer be in room {member.room!r}",
                "no access to the room",
            )
            return
        await self._hold(member, grant, "the room's rules changed")
        if not grant.may_publish:
            raise m.MessageError(
                "forbidden", "your room role may not publish", None, msg.request_id
            )
        quotas.check_connection(self.app, member.user_id)
        pub = await member.peer.publish(msg.sdp, label=msg.label)
        if await self._orphaned(member, pub.id):
            return
        self.send(
            m.Published(
                request_id=msg.request_id,
                stream_id=pub.id,
                sdp=pub.answer_sdp,
                tracks=[
                    m.TrackDesc(track_id=t.id, kind=t.kind, codec=t.mime_type) for t in pub.tracks
                ],
            )
        )

    async def _orphaned(self, member: Member, connection_id: str) -> bool:
        """A connection made for this socket after its peer went to another (a resume
        while the request was in flight) or left: no client will hear of it, so it
        closes now rather than at its timeout."""
        if self.member is member:
            return False
        if connection_id in member.peer.connections:
            await member.peer.close_connection(connection_id)
        return True

    async def _on_unpublish(self, msg: m.Unpublish) -> None:
        member = self._joined(msg.request_id)
        if not isinstance(member.peer.connections.get(msg.stream_id), UpConnection):
            raise SfuError("not-found", f"you have no stream {msg.stream_id!r}")
        await member.peer.close_connection(msg.stream_id)
        self.send(m.Unpublished(request_id=msg.request_id, stream_id=msg.stream_id))

    async def _on_subscribe(self, msg: m.Subscribe) -> None:
        member = self._joined(msg.request_id)
        quotas.check_connection(self.app, member.user_id)
        sub = await member.peer.subscribe(msg.stream_id)
        if await self._orphaned(member, sub.id):
            return
        self.send(
            m.Offer(
                request_id=msg.request_id,
                subscription_id=sub.id,
                stream_id=sub.stream_id,
                sdp=sub.offer_sdp,
            )
        )

    async def _on_answer(self, msg: m.Answer) -> None:
        member = self._joined(msg.request_id)
        await member.peer.answer(msg.subscription_id, msg.sdp)
        self.send(m.Answered(request_id=msg.request_id, subscription_id=msg.subscription_id))

    async def _on_unsubscribe(self, msg: m.Unsubscribe) -> None:
        member = self._joined(msg.request_id)
        if not isinstance(member.peer.connections.get(msg.subscription_id), DownConnection):
            raise SfuError("not-found", f"you have no subscription {msg.subscription_id!r}")
        await member.peer.close_connection(msg.subscription_id)
        self.send(m.Unsubscribed(request_id=msg.request_id, subscription_id=msg.subscription_id))

    async def _on_ice(self, msg: m.Ice) -> None:
        member = self._joined(msg.request_id)
        await member.peer.add_ice_candidate(
            msg.connection_id, msg.candidate or None, msg.sdp_mid, msg.sdp_mline_index
        )

    async def _on_view(self, msg: m.View) -> None:
        """Adaptive stream: each subscription's video gets the layer that covers its
        rendered size, nothing while not visible. Answered only if it fails."""
        member = self._joined(msg.request_id)
        for view in msg.views:
            conn = member.peer.connections.get(view.subscription_id)
            if not isinstance(conn, DownConnection):
                raise SfuError("not-found", f"you have no subscription {view.subscription_id!r}")
            for track_id in {d.track.id for d in conn.tracks if d.kind == "video"}:
                member.peer.set_preferences(
                    conn.id, track_id, view.width, view.height, view.visible, view.fps
                )

    async def _on_restart_ice(self, msg: m.RestartIce) -> None:
        member = self._joined(msg.request_id)
        connection = member.peer.connections.get(msg.connection_id)
        if connection is None:
            raise SfuError("not-found", f"you have no connection {msg.connection_id!r}")
        sdp = restart_ice(connection)
        self.send(
            m.IceRestarted(request_id=msg.request_id, connection_id=msg.connection_id, sdp=sdp)
        )

    async def _on_leave(self, msg: m.Leave) -> None:
        member = self._joined(msg.request_id)
        await self._leave("left")
        self.send(m.Left(request_id=msg.request_id, room=member.room, reason="left"))

    _handlers: dict[str, Callable[[Session, Any], Awaitable[None]]] = {
        "ping": _on_ping,
        "join": _on_join,
        "publish": _on_publish,
        "unpublish": _on_unpublish,
        "subscribe": _on_subscribe,
        "answer": _on_answer,
        "unsubscribe": _on_unsubscribe,
        "ice": _on_ice,
        "view": _on_view,
        "restart-ice": _on_restart_ice,
        "leave": _on_leave,
    }

    async def _leave(self, reason: str) -> None:
        member = self.member
        if member is None:
            return
        self.member = None
        if self.resume_token is not None:
            self.app[RESUMABLE].pop(self.resume_token, None)
            self.resume_token = None
        self._scope = (None, None)
        self.app[MEMBERS].discard(member)
        try:
            await member.peer.leave(reason)
        except Exception:
            logger.exception("peer %s failed to leave cleanly", member.peer.id)

    # --- events from the room ------------------------------------------------------------

    def _on_gone(self, reason: str) -> None:
        """The SFU removed this peer (timeout, room closed)."""
        member = self.member
        if member is not None:
            self.member = None
            self._gone_room = member.room  # (its scope stays: changes still reach us)
            self.send(m.Left(room=member.room, reason=reason))

    def _on_event(self, event: events.Event | MemberJoined) -> None:
        member = self.member
        if member is None:
            return
        mine = member.peer.id
        out: ServerMessage | None = None
        if isinstance(event, MemberJoined):
            if event.member is not member:
                out = m.PeerJoined(peer=member_info(event.member))
        elif isinstance(event, events.PeerLeft):
            if event.peer_id != mine:
                out = m.PeerLeft(peer_id=event.peer_id, reason=event.reason)
        elif isinstance(event, events.StreamAdded):
            out = m.StreamAdded(
                stream_id=event.stream_id,
                peer_id=event.peer_id,
                label=event.label,
                tracks=self._stream_tracks(member, event.stream_id),
            )
        elif isinstance(event, events.StreamRemoved):
            out = m.StreamRemoved(stream_id=event.stream_id, peer_id=event.peer_id)
        elif isinstance(event, events.TrackAdded):
            out = m.TrackAdded(
                stream_id=event.stream_id,
                peer_id=event.peer_id,
                track_id=event.track_id,
                kind=event.kind,
            )
        elif isinstance(event, events.TrackRemoved):
            out = m.TrackRemoved(
                stream_id=event.stream_id,
                peer_id=event.peer_id,
                track_id=event.track_id,
                kind=event.kind,
            )
        elif isinstance(event, events.SubscriptionClosed):
            if event.peer_id == mine:
                out = m.SubscriptionClosed(
                    subscription_id=event.subscription_id,
                    stream_id=event.stream_id,
                    reason=event.reason,
                )
        elif isinstance(event, events.ConnectionStateChanged):
            if event.peer_id == mine:
                out = m.ConnectionState(connection_id=event.connection_id, state=event.state)
        elif isinstance(event, events.ActiveSpeaker):
            out = m.ActiveSpeaker(peer_id=event.peer_id)
        elif isinstance(event, events.LayersNeeded):
            if event.peer_id == mine:
                out = m.LayersNeeded(
                    stream_id=event.stream_id, track_id=event.track_id, rids=list(event.rids)
                )
        elif isinstance(event, events.TrackPaused):
            if event.peer_id == mine:
                out = m.VideoPaused(
                    subscription_id=event.subscription_id,
                    stream_id=event.stream_id,
                    track_id=event.track_id,
                    reason=event.reason,
                )
        elif isinstance(event, events.TrackResumed) and event.peer_id == mine:
            out = m.VideoResumed(
                subscription_id=event.subscription_id,
                stream_id=event.stream_id,
                track_id=event.track_id,
            )
        if out is not None:
            self.send(out)

    def _stream_tracks(self, member: Member, stream_id: str) -> list[m.TrackDesc]:
        up = member.peer.room.publication(stream_id)
        if up is None:
            return []
        return [m.TrackDesc(track_id=t.id, kind=t.kind, codec=t.mime_type) for t in up.tracks]


async def _close_unclaimed(member: Member, claimed: set[str]) -> None:
    """A resumed peer's connections its client does not claim: made by a publish or
    subscribe whose reply the dropped socket never delivered (or a subscription the
    client gave up before answering). Nothing else would close them until they time out."""
    for connection_id in [c for c in member.peer.connections if c not in claimed]:
        await member.peer.close_connection(connection_id)


async def send_room_elsewhere(
    app: web.Application, room: str, node_url: str | None, reason: str
) -> int:
    """This node gives ``room`` up (draining): each signalling socket in it is told to
    ``reconnect`` (to the room's new node, ``node_url``, when there is one), its peer
    leaves, and the socket closes with 1012. Returns how many sockets were told."""
    url = node_url + WS_PATH if node_url is not None else None
    moved = [
        s
        for s in app[OPEN_CHANNELS]
        if isinstance(s, Session) and s.member is not None and s.member.room == room
    ]
    for session in moved:
        # (no resume: the peer is not kept for one, it is gone with this node.) A client
        # whose socket another node holds joins again there, which relays it on: that
        # door is not draining, and this node's URL may not be reachable to it at all
        to = None if session.through_door else url
        session.send(m.Reconnect(room=room, url=to, reason=reason))
        await session._leave(reason)
        session.close(CLOSE_MOVED, reason)
    return len(moved)


RESUMABLE = web.AppKey("sfu_ws_resumable", dict[str, Session])  # resume token -> holder
SEND_LIMITS = web.AppKey("sfu_ws_send_limits", SendLimits)


@routes.get(WS_PATH)
@public  # authenticates inside: Authorization header or a first "auth" message
@endpoint(errors=(401, 429))
async def sfu_websocket(request: web.Request) -> web.StreamResponse:
    app = request.app
    principal: Principal | None = None
    token = bearer_token(request)
    if token is not None:
        try:
            principal = await app[TOKENS].verify_access(token)
        except TokenError as exc:
            raise unauthorized(exc.code, exc.message) from exc
    ws = Session.response(request)
    session = Session(app, ws)
    if principal is not None:  # known before the upgrade: refused with a plain 429
        session.principal, session.token = principal, token or ""
        session.lease = await slots.take_slot(app, principal.user_id)
        if session.lease is None:
            raise slots.too_many_sessions(app[CONFIG].max_websockets_per_user)
    async with session.serving():  # (a slot taken above goes back even if prepare fails)
        await ws.prepare(request)
        await session.run()
    return ws


def setup(app: web.Application) -> None:
    """Signalling sockets' state (the route is in :mod:`vtp.routes`)."""
    app[RESUMABLE] = {}
    config = app[CONFIG]
    app[SEND_LIMITS] = SendLimits(config.signalling_message_rate, config.signalling_message_burst)
