"""WebSocket signalling at ``GET /api/v1/sfu/ws`` (protocol: docs/protocol.md).

One WebSocket is one peer of at most one room at a time. Authentication: an
``Authorization: Bearer`` header on the upgrade request (checked before upgrading: a bad
token gets a 401 JSON error), or, for browsers that cannot set headers on a WebSocket,
an ``auth`` message first (a bad token gets an ``error`` message and close code 4401).
Tokens are not accepted in the URL: URLs end up in logs, proxies and browser history.

Authority is not checked at join only. The session watches its user's changes of
authority (:mod:`vtp.auth.authority`): when one comes, the token is verified again (fails:
close 4401) and the room grant asked again (:mod:`vtp.sfu.rights`: refused -> ``left``
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
them, ``restart-ice``); a socket still open for it is closed (4409). Without a resume in
time the peer leaves, and its publications end for every subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from vtp.api.access import public
from vtp.api.errors import ApiError, unauthorized
from vtp.api.middleware import bearer_token
from vtp.appkeys import AUTHORITY, CONFIG, DB, TOKENS
from vtp.auth.authority import AuthorityChange, Scope, Watch, until_expired
from vtp.auth.principal import Principal
from vtp.auth.tokens import TokenError
from vtp.db.users import get_user
from vtp.limits import websockets as ws_limits
from vtp.limits.tokenbucket import SendLimit, SendLimits
from vtp.sfu import events, quotas, rights
from vtp.sfu import messages as m
from vtp.sfu.access import RoomGrant, room_access
from vtp.sfu.connection import DownConnection, UpConnection
from vtp.sfu.errors import SfuError
from vtp.sfu.icerestart import restart_ice
from vtp.sfu.members import MEMBERS, Member, MemberJoined
from vtp.sfu.room import Room
from vtp.sfu.service import SFU_KEY

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

WS_PATH = "/api/v1/sfu/ws"
AUTH_TIMEOUT_S = 10.0
HEARTBEAT_S = 10.0
KEEPALIVE_S = 0.5
MAX_MESSAGE_BYTES = 256 * 1024
MAX_QUEUED = 1024  # outgoing messages a client may fall behind by before it is dropped
MAX_PEERS_PER_USER = 8  # per room: WebSockets, REST, WHIP and WHEP sessions together
CLOSE_UNAUTHORIZED = 4401  # bad, expired (not renewed) or revoked token
CLOSE_FORBIDDEN = 4403  # the right to be in the room was taken away
CLOSE_TOO_SLOW = 4408
CLOSE_RESUMED = 4409  # another socket resumed this one's peer


def sfu_error_code(exc: SfuError) -> str:
    """The signalling/REST error code for an SFU error code ("bad-sdp" -> "bad_sdp")."""
    return {"exists": "conflict", "internal": "internal_error"}.get(
        exc.code, exc.code.replace("-", "_")
    )


def member_info(member: Member) -> m.PeerInfo:
    return m.PeerInfo(
        peer_id=member.peer.id,
        user_id=str(member.user_id),
        display=member.display,
        role=member.role,
    )


async def join_room(
    app: web.Application, principal: Principal, room_name: str
) -> tuple[RoomGrant, str]:
    """Room access check and display name for a new peer; raises ApiError."""
    grant = await room_access(app, principal, room_name)
    if grant is None:
        raise ApiError(403, "forbidden", f"you may not join room {room_name!r}")
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


class Session:
    """One signalling WebSocket."""

    def __init__(self, app: web.Application, ws: web.WebSocketResponse) -> None:
        self.app = app
        self.ws = ws
        self.principal: Principal | None = None
        self.token = ""  # re-checked at every join and change of authority
        self.member: Member | None = None
        self._scope: Scope = (None, None)  # the member's (course_id, session_id)
        self._gone_room: str | None = None  # the room the server took this peer out of
        self._watch: Watch | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._revoking = False
        self._expired = False
        self.lease: str | None = None  # this socket's slot among its user's (give back)
        self.limit: SendLimit | None = None  # what this socket may send, once authenticated
        self._out: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._closer: asyncio.Future[bool] | None = None
        self.resume_token: str | None = None  # (while it holds a member)
        self._parked: asyncio.Future[None] | None = None  # the leave after a drop
        self._said_goodbye = False  # the client closed the socket (a close frame)

    # --- outgoing -----------------------------------------------------------------------

    def send(self, message: m.ServerMessage) -> None:
        if self._closing:
            return
        if self._out.qsize() >= MAX_QUEUED:
            logger.warning("signalling client too slow; closing its WebSocket")
            self._closing = True
            self._closer = asyncio.ensure_future(
                self.ws.close(code=CLOSE_TOO_SLOW, message=b"too many unread messages")
            )
            return
        self._out.put_nowait(message.to_json())

    def error(
        self, code: str, message: str, details: Any = None, request_id: str | None = None
    ) -> None:
        self.send(m.ErrorMessage.of(code, message, details, request_id))

    async def _write_loop(self) -> None:
        while True:
            item = await self._out.get()
            if item is None or self.ws.closed:
                return
            try:
                await self.ws.send_json(item)
            except (ConnectionError, RuntimeError):
                return

    async def _flush(self) -> None:
        """Let the writer send what is queued, then stop it."""
        self._out.put_nowait(None)
        if self._writer is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._writer, 5)

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self, principal: Principal | None, token: str = "") -> None:
        self.principal = principal
        self.token = token
        self._writer = asyncio.create_task(self._write_loop())
        keepalive = asyncio.create_task(self._keep_alive())
        try:
            if principal is not None:
                self.send(m.Authenticated(user_id=str(principal.user_id), role=principal.role))
            elif not await self._authenticate():
                await self._flush()
                await self.ws.close(code=CLOSE_UNAUTHORIZED, message=b"unauthorized")
                return
            assert self.principal is not None
            if self.lease is None:
                self.lease = await ws_limits.take_slot(self.app, self.principal.user_id)
                if self.lease is None:
                    exc = ws_limits.too_many_sessions(self.app[CONFIG].max_websockets_per_user)
                    await self._close_limited(exc.code, exc.message)
                    return
            self.limit = self.app[SEND_LIMITS].for_connection(self.principal.user_id)
            self._watch_authority()
            while True:
                msg = await self.ws.receive()
                if msg.type == WSMsgType.CLOSE:
                    self._said_goodbye = True
                    break
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    if not self.limit.allow():
                        # the flood costs the flooder: its socket, not the room's
                        await self._close_limited(
                            "rate_limited", "too many messages: this connection is closed"
                        )
                        break
                    await self._handle(msg.data)
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
        finally:
            self._closing = True
            resume_s = self.app[CONFIG].sfu_resume_s
            parking = (
                self.member is not None
                and self.resume_token is not None
                and resume_s > 0
                and not self._said_goodbye
            )
            if self._watch is not None and not parking:
                self._watch.cancel()  # (a parked peer's rights are still watched)
            if self._expiry is not None and not self._expired:
                self._expiry.cancel()  # (not while it closes the socket itself)
            keepalive.cancel()
            if self._writer is not None and not self._writer.done():
                self._writer.cancel()
            if parking:
                # the socket dropped, not the peer: another may take it back a while
                self._parked = self.app[SFU_KEY].spawn(self._leave_after(resume_s))
            else:
                # aiohttp cancels the handler when the client's TCP connection goes:
                # the peer must still leave, so that runs in a task of its own.
                await asyncio.shield(self.app[SFU_KEY].spawn(self._leave("disconnected")))

    async def _leave_after(self, delay_s: float) -> None:
        try:
            await asyncio.sleep(delay_s)
            await self._leave("disconnected")
        finally:
            if self._watch is not None:
                self._watch.cancel()

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
        if self._watch is not None and self._parked is not None:
            self._watch.cancel()  # (the resuming session watches its own)
        if not self._closing:
            self._closing = True
            self._closer = asyncio.ensure_future(
                self.ws.close(code=CLOSE_RESUMED, message=b"resumed on another socket")
            )
        return member

    # --- authority ----------------------------------------------------------------------

    def _watch_authority(self) -> None:
        assert self.principal is not None
        bus = self.app.get(AUTHORITY)
        if bus is not None:
            self._watch = bus.watch(self.principal.user_id, self._recheck, lambda: self._scope)
        self._expiry = asyncio.create_task(self._expire())

    async def _expire(self) -> None:
        await until_expired(lambda: self.principal.expires_at if self.principal else 0)
        self._expired = True
        await self._revoke(
            CLOSE_UNAUTHORIZED,
            "token_expired",
            "the access token expired: send auth with a fresh one before it expires",
            "token expired",
        )

    async def _recheck(self, change: AuthorityChange) -> None:
        """Authority changed: is the token still good, and the room grant?"""
        if self._parked is not None:
            await self._recheck_parked(change)
            return
        if self._closing or self._revoking:
            return
        # A peer the server already took out of its room (removed by the teacher, room
        # closed at the session's end) counts too: its right is what decides the socket.
        member = self.member
        room = member.room if member is not None else self._gone_room
        try:
            self.principal = await self.app[TOKENS].verify_access(self.token)
        except TokenError as exc:
            await self._revoke(CLOSE_UNAUTHORIZED, exc.code, exc.message, change.reason)
            return
        if room is None:
            return
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
        if self._closing or self._revoking:
            return
        self._revoking = True
        member = self.member
        if member is not None:
            await self._leave(f"access revoked: {reason}")
            self.send(m.Left(room=member.room, reason=f"access revoked: {reason}"))
        self.error(code, message)
        self._closing = True
        await self._flush()
        with contextlib.suppress(Exception):
            await self.ws.close(code=close_code, message=code.encode())

    async def _close_limited(self, code: str, message: str) -> None:
        self.error(code, message)
        await self._flush()
        self._closing = True
        await self.ws.close(code=ws_limits.CLOSE_LIMITED, message=code.encode())

    async def _keep_alive(self) -> None:
        """An open WebSocket (answering the heartbeat) means the peer is there, even with
        no media connection: keep the SFU from removing it as silent."""
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            if self.member is not None:
                self.member.peer.touch()

    async def _authenticate(self) -> bool:
        try:
            msg = await self.ws.receive(timeout=AUTH_TIMEOUT_S)
        except TimeoutError:
            self.error("not_authenticated", "send an auth message first")
            return False
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return False
        try:
            parsed = m.parse_client_message(msg.data)
        except m.MessageError as exc:
            self.error(exc.code, exc.message, exc.details, exc.request_id)
            return False
        if not isinstance(parsed, m.Auth):
            self.error("not_authenticated", "send an auth message first", None, parsed.request_id)
            return False
        try:
            self.principal = await self.app[TOKENS].verify_access(parsed.token)
            self.token = parsed.token
        except TokenError as exc:
            self.error(exc.code, exc.message, None, parsed.request_id)
            return False
        self.send(
            m.Authenticated(
                request_id=parsed.request_id,
                user_id=str(self.principal.user_id),
                role=self.principal.role,
            )
        )
        return True

    # --- incoming -----------------------------------------------------------------------

    async def _handle(self, raw: str | bytes) -> None:
        request_id: str | None = None
        try:
            message = m.parse_client_message(raw)
            request_id = message.request_id
            if self.member is not None:
                self.member.peer.touch()
            handler = self._handlers.get(message.type)
            assert handler is not None
            await handler(self, message)
        except m.MessageError as exc:
            self.error(exc.code, exc.message, exc.details, exc.request_id)
        except SfuError as exc:
            self.error(sfu_error_code(exc), exc.message, None, request_id)
        except ApiError as exc:
            self.error(exc.code, exc.message, exc.details, request_id)
        except Exception:
            logger.exception("signalling message handler failed")
            self.error(
                "internal_error", "the server failed to handle this message", None, request_id
            )

    def _joined(self, request_id: str | None) -> Member:
        if self.member is None:
            raise m.MessageError("not_joined", "join a room first", None, request_id)
        return self.member

    async def _on_auth(self, msg: m.Auth) -> None:
        """A fresh token for the same user (the old one expired): later joins use it."""
        assert self.principal is not None
        try:
            principal = await self.app[TOKENS].verify_access(msg.token)
        except TokenError as exc:
            raise m.MessageError(exc.code, exc.message, None, msg.request_id) from None
        if principal.user_id != self.principal.user_id:
            raise m.MessageError(
                "forbidden", "a new token must be for the same user", None, msg.request_id
            )
        self.principal, self.token = principal, msg.token
        self.send(
            m.Authenticated(
                request_id=msg.request_id, user_id=str(principal.user_id), role=principal.role
            )
        )

    async def _on_ping(self, msg: m.Ping) -> None:
        self.send(m.Pong(request_id=msg.request_id))

    async def _on_join(self, msg: m.Join) -> None:
        if self.member is not None:
            raise m.MessageError(
                "already_joined", f"already in room {self.member.room!r}", None, msg.request_id
            )
        assert self.principal is not None
        try:  # the token may have expired or been revoked since it was presented
            self.principal = await self.app[TOKENS].verify_access(self.token)
        except TokenError as exc:
            raise m.MessageError(
                exc.code, f"{exc.message}: send auth with a fresh token", None, msg.request_id
            ) from None
        if msg.resume_token is not None and await self._resume(msg):
            return
        grant, display = await join_room(self.app, self.principal, msg.room)
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
            self.principal = await self.app[TOKENS].verify_access(self.token)
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
                    conn.id, track_id, view.width, view.height, view.visible
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
        "auth": _on_auth,
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
        out: m.ServerMessage | None = None
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


SESSIONS = web.AppKey("sfu_ws_sessions", set[Session])
RESUMABLE = web.AppKey("sfu_ws_resumable", dict[str, Session])  # resume token -> holder
SEND_LIMITS = web.AppKey("sfu_ws_send_limits", SendLimits)


@routes.get(WS_PATH)
@public  # authenticates inside: Authorization header or a first "auth" message
async def sfu_websocket(request: web.Request) -> web.StreamResponse:
    principal: Principal | None = None
    token = bearer_token(request)
    if token is not None:
        try:
            principal = await request.app[TOKENS].verify_access(token)
        except TokenError as exc:
            raise unauthorized(exc.code, exc.message) from exc
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "bad_request", "this endpoint speaks WebSocket only")
    session = Session(request.app, ws)
    if principal is not None:  # known before the upgrade: refused with a plain 429
        session.lease = await ws_limits.take_slot(request.app, principal.user_id)
        if session.lease is None:
            raise ws_limits.too_many_sessions(request.app[CONFIG].max_websockets_per_user)
    try:
        await ws.prepare(request)
        request.app[SESSIONS].add(session)
        await session.run(principal, token or "")
    finally:
        request.app[SESSIONS].discard(session)
        await ws_limits.give_back(request.app, session.lease)
    return ws


async def _close_sessions(app: web.Application) -> None:
    sessions: set[Session] = app[SESSIONS]
    for session in list(sessions):
        with contextlib.suppress(Exception):
            await session.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def setup(app: web.Application) -> None:
    """Signalling state; call after :func:`vtp.sfu.setup` (it needs the SFU)."""
    from vtp.sfu.members import members_ctx

    sessions: set[Session] = set()
    app[SESSIONS] = sessions
    app[RESUMABLE] = {}
    config = app[CONFIG]
    app[SEND_LIMITS] = SendLimits(config.signalling_message_rate, config.signalling_message_burst)
    app.cleanup_ctx.append(members_ctx)
    app.on_shutdown.append(_close_sessions)
    app.add_routes(routes)
