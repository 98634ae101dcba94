"""The room's node's side of the relayed classroom live channel: channels of clients whose
WebSocket another node of the cluster holds (:mod:`vtp.channel.relay`).

A :class:`RelayedConnection` is the live channel of :mod:`vtp.web.live` (the same
admission, handlers, controls, authority rechecks) on a
:class:`~vtp.channel.relay.RelayedSocket` (:class:`~vtp.channel.relayed.RelayedChannel`):
the participant is one of the class's here, beside its room, like any other; the door
relays what the client sends and the client gets what the class sends it.
"""

from __future__ import annotations

import uuid

from aiohttp import WSCloseCode, web

from vtp.channel import relay
from vtp.channel.relay import RelayedSocket
from vtp.channel.relayed import RelayedChannel, authenticated
from vtp.web.live import Connection


class RelayedConnection(RelayedChannel, Connection):
    """A live channel on this node for a socket another node holds (it holds nothing
    here but the participant: the link lasts as long as the socket)."""


async def serve_relayed(app: web.Application, socket: RelayedSocket, token: str) -> None:
    conn = RelayedConnection(app, socket)
    try:
        session_id = uuid.UUID(socket.params.get("session_id", ""))
    except ValueError:
        conn.close(WSCloseCode.POLICY_VIOLATION, "no such session")
        return
    if not await authenticated(conn, token):
        return
    async with conn.serving():
        await conn.run(session_id)


def setup(app: web.Application) -> None:
    """This node serves relayed live channels (in a cluster)."""
    relay.host(app, "live", serve_relayed)
