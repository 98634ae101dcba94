"""One WebSocket channel: what every VTP WebSocket endpoint shares.

The SFU signalling socket (:mod:`vtp.signalling.websocket`) and the classroom live
channel (:mod:`vtp.web.live`) are :class:`Channel` subclasses; they add their messages
and what those do. The channel itself does the rest, the same way for both:

* **authentication**: an ``auth {token}`` message first, within ``auth_timeout_s``
  (browsers cannot set headers on a WebSocket; an endpoint may also accept an
  ``Authorization`` header before the upgrade and skip it). Another message first gets
  ``not_authenticated``, one that is not a valid message its parse error
  (``invalid_json``, ``unknown_type``, ``validation_error``), a bad token its code
  (``token_invalid``, ``token_expired``, ``token_revoked``); then close 4401.
* **renewal**: ``auth`` again with a fresh access token of the same user before the
  current one expires moves the expiry; a token that expires without renewal closes the
  channel with 4401 ``token_expired``.
* **authority**: every change of authority concerning the user (or the course/session the
  channel is in) calls :meth:`Channel.on_authority` (:mod:`vtp.auth.authority`).
* **bounded outgoing queue** (:class:`~vtp.limits.outqueue.OutQueue`): one writer sends
  in order; state messages with a key replace their queued older version; a receiver
  ``max_queued`` unkeyed messages behind is closed at once (``too_slow_code``: what waits
  for it is dropped). Any other close is queued behind what was sent before it, so the
  client reads why before the socket closes.
* **heartbeats**: WebSocket pings every ``heartbeat_s``; a peer that stops answering is
  closed by aiohttp.
* **rate limits** (:mod:`vtp.limits.tokenbucket`): a socket that sends faster than its
  (or its user's) rate gets ``rate_limited`` and close 4429; its user holds at most
  ``VTP_MAX_WEBSOCKETS_PER_USER`` sockets over every process (:mod:`.slots`,
  ``too_many_sessions``, 4429).
* **messages**: pydantic models, one per type (:mod:`.messages`); a message that does not
  validate gets an ``error`` and the channel goes on. Handlers run one at a time, in order.
* **shutdown**: every open channel is closed with 1001 when the server stops.
* **relay** (:mod:`vtp.channel.relay`): with several nodes, a channel about a room
  another node serves is relayed there (:meth:`Channel.relay`): this node keeps the
  socket and the checks above, the room's node serves the messages
  (:mod:`vtp.channel.relayed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from vtp.api.errors import ApiError
from vtp.appkeys import AUTHORITY, CONFIG, TOKENS
from vtp.auth.authority import AuthorityChange, Scope, Watch, until_expired
from vtp.auth.principal import Principal
from vtp.auth.tokens import TokenError
from vtp.channel import slots
from vtp.channel.messages import MessageError, MessageSet, ServerMessage
from vtp.channel.relay import CLOSE_NODE_GONE, RELAY, DoorLink, RelayLost
from vtp.cluster.nodes import NodeInfo
from vtp.limits.outqueue import OutQueue
from vtp.limits.tokenbucket import SendLimit, SendLimits

logger = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401  # bad, expired (not renewed) or revoked token
CLOSE_FORBIDDEN = 4403  # the right behind the channel was taken away
CLOSE_LIMITED = slots.CLOSE_LIMITED  # 4429: flooding, or too many sockets

DRAIN_S = 5.0  # how long a closing channel may take to send what it queued

Outgoing = dict[str, Any] | tuple[int, str]  # a message, or a close (code, reason)


class Socket(Protocol):
    """What a channel uses of its WebSocket: an :class:`aiohttp.web.WebSocketResponse`,
    or the stand-in for a client socket another node holds
    (:class:`vtp.channel.relay.RelayedSocket`)."""

    @property
    def closed(self) -> bool: ...

    # (aiohttp's signature, timeout included)
    async def receive(self, timeout: float | None = None) -> WSMessage: ...  # noqa: ASYNC109

    async def send_json(self, data: Any) -> None: ...

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"") -> bool: ...


@dataclass(frozen=True, slots=True)
class Rules:
    """One endpoint's settings."""

    max_message_bytes: int
    max_queued: int  # unkeyed outgoing messages a receiver may fall behind by
    too_slow_code: int  # the close code for one that falls further
    heartbeat_s: float = 10.0
    auth_timeout_s: float = 10.0


class Channel:
    """One open WebSocket of one user. Subclasses set :attr:`rules`, :attr:`messages`
    (their client messages, an ``auth`` model among them) and implement :meth:`handle`,
    :meth:`error_message` and :meth:`authenticated_message`."""

    rules: ClassVar[Rules]
    messages: ClassVar[MessageSet[Any]]
    relay_kind: ClassVar[str]  # its name between nodes (vtp.channel.relay)
    through_door = False  # run by the room's node for a socket another node holds

    def __init__(self, app: web.Application, ws: Socket, limits: SendLimits):
        self.app = app
        self.ws = ws
        self.limits = limits
        self.principal: Principal | None = None
        self.token = ""  # re-checked on changes of authority; renewed by "auth"
        self.lease: str | None = None  # this socket's slot among its user's (give back)
        self.limit: SendLimit | None = None
        self.out: OutQueue[Outgoing] = OutQueue(self.rules.max_queued)
        self.closing = False
        self.said_goodbye = False  # the client closed the socket (a close frame)
        # a closed channel whose state outlives it (a peer parked for a resume) goes on
        # hearing changes of authority, to end that state when its right ends
        self.keep_watching = False
        self._writer: asyncio.Task[None] | None = None
        self._watch: Watch | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._closer: asyncio.Future[bool] | None = None  # a too-slow receiver's close
        self.link: DoorLink | None = None  # the room's node, when another one serves it

    @classmethod
    def response(cls, request: web.Request) -> web.WebSocketResponse:
        """The WebSocket to prepare for ``request``; 400 when it is not an upgrade."""
        ws = web.WebSocketResponse(
            heartbeat=cls.rules.heartbeat_s, max_msg_size=cls.rules.max_message_bytes
        )
        if not ws.can_prepare(request).ok:
            raise ApiError(400, "bad_request", "this endpoint speaks WebSocket only")
        return ws

    @property
    def user_id(self) -> uuid.UUID:
        assert self.principal is not None
        return self.principal.user_id

    # --- what a protocol says ---------------------------------------------------------

    def error_message(
        self, code: str, message: str, details: Any, request_id: str | None
    ) -> ServerMessage:
        raise NotImplementedError

    def authenticated_message(self, request_id: str | None) -> ServerMessage:
        """The answer to a renewal (``auth`` on an open channel)."""
        raise NotImplementedError

    async def handle(self, message: Any) -> None:
        """One client message (not ``auth``: renewal is the channel's)."""
        raise NotImplementedError

    def refusal(self, exc: Exception) -> MessageError | None:
        """An endpoint's own exceptions that are answers to the client, not failures."""
        return None

    async def on_authority(self, change: AuthorityChange) -> None:
        """Authority changed for this user or scope: re-check what the channel holds."""

    async def on_expired(self) -> None:
        """The token expired without renewal."""
        self.error(
            "token_expired",
            "the access token expired: send auth with a fresh one before it expires",
        )
        self.close(CLOSE_UNAUTHORIZED, "token_expired")

    # --- outgoing -----------------------------------------------------------------------

    def send(self, message: ServerMessage | dict[str, Any], key: Hashable | None = None) -> None:
        """Queue a message; one with a ``key`` is state that replaces the queued older
        message of the same key."""
        if self.closing:
            return
        item = message.to_json() if isinstance(message, ServerMessage) else message
        if not self.out.put(item, key):
            # what waits for it is dropped: it is closed at once, not after its backlog
            logger.warning("%s client too slow; closing its WebSocket", type(self).__name__)
            self.closing = True
            self._closer = asyncio.ensure_future(
                self.ws.close(code=self.rules.too_slow_code, message=b"too many unread messages")
            )

    def error(
        self, code: str, message: str, details: Any = None, request_id: str | None = None
    ) -> None:
        self.send(self.error_message(code, message, details, request_id))

    def close(self, code: int, reason: str) -> None:
        """Close the WebSocket once what is queued before has been sent."""
        if not self.closing:
            self.closing = True
            self.out.put((code, reason), force=True)
            if self._writer is None:  # nothing sends: close now
                self._writer = asyncio.ensure_future(self._write_loop())

    def refuse(
        self, close_code: int, code: str, message: str, request_id: str | None = None
    ) -> None:
        """An error message, then close."""
        self.error(code, message, None, request_id)
        self.close(close_code, code)

    def start_writer(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop())

    async def _write_loop(self) -> None:
        while True:
            item = await self.out.get()
            if self.ws.closed:
                return
            if isinstance(item, tuple):
                with contextlib.suppress(Exception):
                    await self.ws.close(code=item[0], message=item[1].encode()[:120])
                return
            try:
                await self.ws.send_json(item)
            except (ConnectionError, RuntimeError):
                return

    async def drain(self) -> None:
        """Wait (``DRAIN_S`` at most) for the writer to send what is queued and close."""
        if self._writer is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._writer), DRAIN_S)

    # --- authentication -----------------------------------------------------------------

    async def authenticate(self) -> str | None:
        """Read the first message: ``auth {token}``. Returns its request id ("" when it
        has none) with :attr:`principal` set, or None after an error message and a queued
        close (4401)."""
        try:
            msg = await self.ws.receive(timeout=self.rules.auth_timeout_s)
        except TimeoutError:
            self.refuse(CLOSE_UNAUTHORIZED, "not_authenticated", "send an auth message first")
            return None
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            self.close(CLOSE_UNAUTHORIZED, "unauthorized")
            return None
        try:
            parsed = self.messages.parse(msg.data)
        except MessageError as exc:  # (invalid_json, unknown_type, validation_error)
            self.error(exc.code, exc.message, exc.details, exc.request_id)
            self.close(CLOSE_UNAUTHORIZED, "unauthorized")
            return None
        request_id = getattr(parsed, "request_id", None)
        if getattr(parsed, "type", None) != "auth":
            self.refuse(
                CLOSE_UNAUTHORIZED, "not_authenticated", "send an auth message first", request_id
            )
            return None
        try:
            self.principal = await self.app[TOKENS].verify_access(parsed.token)
        except TokenError as exc:
            self.refuse(CLOSE_UNAUTHORIZED, exc.code, exc.message, request_id)
            return None
        self.token = parsed.token
        return request_id or ""

    async def renew(self, token: str, request_id: str | None) -> None:
        """``auth`` on an open channel: a fresh token of the same user moves the expiry."""
        try:
            principal = await self.app[TOKENS].verify_access(token)
        except TokenError as exc:
            raise MessageError(exc.code, exc.message, None, request_id) from None
        if principal.user_id != self.user_id:
            raise MessageError(
                "forbidden", "a new token must be for the same user", None, request_id
            )
        self.principal, self.token = principal, token
        self.send(self.authenticated_message(request_id))

    async def verify_again(self) -> Principal:
        """The token held, checked now (it may have expired or been revoked)."""
        self.principal = await self.app[TOKENS].verify_access(self.token)
        return self.principal

    # --- the user's slots ----------------------------------------------------------------

    async def take_slot(self) -> bool:
        """One of the user's WebSocket slots; False (and refused, 4429) when all are taken."""
        if self.lease is None:
            self.lease = await slots.take_slot(self.app, self.user_id)
        if self.lease is None:
            exc = slots.too_many_sessions(self.app[CONFIG].max_websockets_per_user)
            self.refuse(CLOSE_LIMITED, exc.code, exc.message)
            return False
        return True

    async def give_back(self) -> None:
        lease, self.lease = self.lease, None
        await slots.give_back(self.app, lease)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """While it runs the channel is one of the app's open ones (`close_all` closes
        them at shutdown); after, the user's slot goes back."""
        self.app[OPEN_CHANNELS].add(self)
        try:
            yield
        finally:
            self.app[OPEN_CHANNELS].discard(self)
            await self.give_back()

    # --- authority ----------------------------------------------------------------------

    def follow_authority(self, scope: Callable[[], Scope]) -> None:
        """Re-check on every change of authority, and end the channel at token expiry."""
        bus = self.app.get(AUTHORITY)
        if bus is not None:
            self._watch = bus.watch(self.user_id, self._on_authority, scope)
        self._expiry = asyncio.create_task(self._expire())

    def stop_following(self, keep_watch: bool = False) -> None:
        """Stop the expiry, and the authority watch unless ``keep_watch``."""
        if self._watch is not None and not keep_watch:
            self._watch.cancel()
        if self._expiry is not None and self._expiry is not asyncio.current_task():
            self._expiry.cancel()

    async def _on_authority(self, change: AuthorityChange) -> None:
        if not self.closing or self.keep_watching:
            await self.on_authority(change)

    async def _expire(self) -> None:
        await until_expired(lambda: self.principal.expires_at if self.principal else 0)
        if not self.closing:
            await self.on_expired()

    # --- incoming -----------------------------------------------------------------------

    async def serve(self) -> None:
        """Handle the client's messages, in order, until the socket closes or floods."""
        self.limit = self.limits.for_connection(self.user_id)
        while True:
            msg = await self.ws.receive()
            if msg.type == WSMsgType.CLOSE:
                self.said_goodbye = True
                break
            if msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED):
                break  # (dropped: no close frame, or the heartbeat went unanswered)
            if self.closing:  # (a handler or a recheck closed it: act on nothing more)
                break
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                if not self.limit.allow():
                    # the flood costs the flooder: its socket, not the room's
                    self.refuse(
                        CLOSE_LIMITED,
                        "rate_limited",
                        "too many messages: this connection is closed",
                    )
                    break
                await self.receive(msg.data)
            elif msg.type == WSMsgType.ERROR:
                break

    async def receive(self, raw: str | bytes) -> None:
        link = self.link
        if link is not None:
            await self._forward(link, raw)
            return
        request_id: str | None = None
        try:
            message = self.messages.parse(raw)
            request_id = getattr(message, "request_id", None)
            if getattr(message, "type", None) == "auth":
                await self.renew(message.token, request_id)
            else:
                await self.handle(message)
        except MessageError as exc:
            self.error(exc.code, exc.message, exc.details, exc.request_id or request_id)
        except Exception as exc:
            refused = self.refusal(exc)
            if refused is not None:
                self.error(
                    refused.code, refused.message, refused.details, refused.request_id or request_id
                )
            else:
                logger.exception("%s message handler failed", type(self).__name__)
                self.error(
                    "internal_error", "the server failed to handle this message", None, request_id
                )

    # --- relayed to the room's node (vtp.channel.relay) ----------------------------------

    def relays(self) -> bool:
        """Does a room on another node get this socket relayed there? (Not a socket that
        came through a door already: no second hop, the client is sent there,
        room_elsewhere.)"""
        return not self.through_door and RELAY in self.app

    async def relay(self, node: NodeInfo, params: dict[str, str], raw: str | None = None) -> None:
        """Another node serves the room: from now on, that node's channel for this socket
        handles the client's messages (``raw``: the first, already read here); this one
        keeps the socket."""
        link = self.app[RELAY].link(node, self.send, self.close, self.relay_lost)
        self.link = link
        self.stop_following()  # (the channel there follows the user's authority)
        try:
            done = await link.open(self.relay_kind, self.token, params, raw)
        except RelayLost as exc:
            self.relay_lost(str(exc))
            return
        if done.ended and self.link is link:
            self.unlinked(done.gone_room)

    async def _forward(self, link: DoorLink, raw: str | bytes) -> None:
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        await self._keep_token(text)
        try:
            done = await link.forward(text)
        except RelayLost as exc:
            self.relay_lost(str(exc))
            return
        if done.ended and self.link is link:
            self.unlinked(done.gone_room)

    async def _keep_token(self, raw: str) -> None:
        """A renewal relayed is this socket's too (for when the link ends); the room's
        node answers it."""
        try:
            message = self.messages.parse(raw)
        except MessageError:
            return
        if getattr(message, "type", None) != "auth":
            return
        with contextlib.suppress(TokenError):
            principal = await self.app[TOKENS].verify_access(message.token)
            if principal.user_id == self.user_id:
                self.principal, self.token = principal, message.token

    def unlinked(self, gone_room: str | None) -> None:
        """The room's node holds nothing for this socket any more. A channel that can go
        on here (a signalling socket, which may join another room) overrides this; else
        the socket closes and the client connects again."""
        self.link = None
        self.close(CLOSE_NODE_GONE, "the room's node ended the channel")

    def relay_lost(self, why: str) -> None:
        """The room's node is gone: the client hears it and connects again."""
        logger.warning("%s relay lost: %s", type(self).__name__, why)
        self.link = None
        self.refuse(
            CLOSE_NODE_GONE,
            "node_gone",
            f"the node serving the room is gone ({why}): connect again",
        )

    def hang_up_link(self) -> None:
        """The socket is over: the room's node ends its channel (or, for a socket that
        dropped, does what a drop does there)."""
        if self.link is not None:
            self.link.hang_up(self.said_goodbye)


OPEN_CHANNELS = web.AppKey("websocket_channels", set[Channel])


async def close_all(app: web.Application) -> None:
    """``on_shutdown``: every open channel closes with 1001."""
    for channel in list(app.get(OPEN_CHANNELS, ())):
        with contextlib.suppress(Exception):
            await channel.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def setup(app: web.Application) -> None:
    app[OPEN_CHANNELS] = set()
    app.on_shutdown.append(close_all)
