"""The room's node's side of relayed signalling: sessions of clients whose WebSocket
another node of the cluster holds (:mod:`vtp.channel.relay`).

A :class:`RelayedSession` is the signalling session of :mod:`vtp.signalling.websocket`
(the same handlers, checks, errors, resume and authority), on a
:class:`~vtp.channel.relay.RelayedSocket` (:class:`~vtp.channel.relayed.RelayedChannel`):
it starts at the ``join`` the door relayed, and ends here when it holds no room.
"""

from __future__ import annotations

from aiohttp import web

from vtp.channel import relay
from vtp.channel.relay import RelayedSocket
from vtp.channel.relayed import RelayedChannel, authenticated
from vtp.signalling.websocket import Session


class RelayedSession(RelayedChannel, Session):
    def holds_nothing(self) -> bool:
        return (
            self.member is None
            and self._gone_room is None
            and self._parked is None
            and not self.closing
        )

    def gone_room(self) -> str | None:
        return self._gone_room


async def serve_relayed(app: web.Application, socket: RelayedSocket, token: str) -> None:
    session = RelayedSession(app, socket)
    if not await authenticated(session, token):
        return
    async with session.serving():  # (no slot to give back: the door holds it)
        await session.run()


def setup(app: web.Application) -> None:
    """This node serves relayed signalling sockets (in a cluster)."""
    relay.host(app, "sfu", serve_relayed)
