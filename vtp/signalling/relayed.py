"""The room's node's side of relayed signalling: sessions of clients whose WebSocket
another node of the cluster holds (:mod:`vtp.signalling.relay`).

A :class:`RelayedSession` is the signalling session of :mod:`vtp.signalling.websocket`
(the same handlers, checks, errors, resume and authority), on a
:class:`~vtp.signalling.relay.RelayedSocket`: the door authenticated the client and
holds its slot, so it starts at the ``join`` the door relayed; what it sends goes to the
door at once, in order with each message's ``done``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable
from typing import Any

from aiohttp import web

from vtp.appkeys import CONFIG, NODES, REDIS, TOKENS
from vtp.auth.tokens import TokenError
from vtp.channel.messages import ServerMessage
from vtp.channel.socket import OPEN_CHANNELS
from vtp.signalling.relay import RELAY, Relay, RelayedSocket
from vtp.signalling.websocket import Session


class RelayedSession(Session):
    may_relay = False  # (a room placed elsewhere again: room_elsewhere, not a second hop)
    through_door = True

    def __init__(self, app: web.Application, socket: RelayedSocket) -> None:
        super().__init__(app, socket)
        self.relayed = socket

    async def open(self) -> bool:
        return True  # the door authenticated the socket and holds the user's slot

    def send(self, message: ServerMessage | dict[str, Any], key: Hashable | None = None) -> None:
        # (no queue here: the door's socket has one; and what is sent must reach the door
        # before the "done" of the message that caused it)
        if not self.closing:
            item = message.to_json() if isinstance(message, ServerMessage) else message
            self.relayed.send_now(item)

    def close(self, code: int, reason: str) -> None:
        if not self.closing:
            self.relayed.close_now(code, reason)
        super().close(code, reason)  # (ends the channel's writer)

    async def receive(self, raw: str | bytes) -> None:
        await super().receive(raw)
        ended = (
            self.member is None
            and self._gone_room is None
            and self._parked is None
            and not self.closing
        )
        self.relayed.done(ended=ended, gone_room=self._gone_room)


async def serve_relayed(app: web.Application, socket: RelayedSocket, token: str) -> None:
    session = RelayedSession(app, socket)
    try:
        principal = await app[TOKENS].verify_access(token)
    except TokenError as exc:  # (the door checked it a moment ago)
        session.error(exc.code, f"{exc.message}: send auth with a fresh token")
        socket.done(ended=True, gone_room=None)
        return
    session.principal, session.token = principal, token
    app[OPEN_CHANNELS].add(session)
    try:
        await session.run()
    finally:
        app[OPEN_CHANNELS].discard(session)


async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
    """``app.cleanup_ctx`` entry, after the cluster's (:func:`vtp.app.cluster_ctx`): a
    node of a cluster relays signalling to and from the others."""
    if not app[CONFIG].cluster or NODES not in app:
        yield
        return
    relay = Relay(app, app[NODES], app[REDIS])

    async def host(socket: RelayedSocket, token: str) -> None:
        await serve_relayed(app, socket, token)

    relay.host = host
    await relay.start()
    app[RELAY] = relay
    try:
        yield
    finally:
        relay.host = None
        await relay.close()
