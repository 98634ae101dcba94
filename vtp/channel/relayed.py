"""The room's node's end of a relayed channel (:mod:`vtp.channel.relay`): a channel whose
client WebSocket another node of the cluster (its door) holds.

:class:`RelayedChannel` goes first in the bases of a channel class (``class
RelayedSession(RelayedChannel, Session)``): the channel is the same one, with the same
handlers, checks, errors and authority, on a :class:`~vtp.channel.relay.RelayedSocket`.
The door authenticated the client and holds its slot; what the channel sends goes to
the door at once (the door's socket has the queue), in order with each message's ``done``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from vtp.appkeys import TOKENS
from vtp.auth.tokens import TokenError
from vtp.channel.messages import ServerMessage
from vtp.channel.relay import RelayedSocket
from vtp.channel.socket import Channel


class RelayedChannel(Channel):
    """Mixin: a :class:`~vtp.channel.socket.Channel` served for a socket another node
    holds. Subclasses say when the channel holds nothing here any more
    (:meth:`holds_nothing`: the socket is the door's alone again)."""

    through_door = True

    @property
    def relayed(self) -> RelayedSocket:
        assert isinstance(self.ws, RelayedSocket)
        return self.ws

    async def open(self) -> bool:
        return True  # the door authenticated the socket

    async def take_slot(self) -> bool:
        return True  # the door holds the user's slot

    def send(self, message: ServerMessage | dict[str, Any], key: Hashable | None = None) -> None:
        # (no queue here: the door's socket has one; and what is sent must reach the door
        # before the "done" of the message that caused it)
        if not self.closing:
            item = message.to_json() if isinstance(message, ServerMessage) else message
            self.relayed.send_now(item, key)

    def close(self, code: int, reason: str) -> None:
        if not self.closing:
            self.relayed.close_now(code, reason)
        super().close(code, reason)  # (ends the channel's writer)

    def holds_nothing(self) -> bool:
        """Nothing of this channel is left here: the link is over, the door keeps the
        socket."""
        return False

    def gone_room(self) -> str | None:
        """The room the server took the client out of (the door still watches it)."""
        return None

    async def receive(self, raw: str | bytes) -> None:
        await super().receive(raw)
        self.relayed.done(ended=self.holds_nothing(), gone_room=self.gone_room())

    def opened(self) -> None:
        """The channel is open (said to the door when the link was opened without a
        first message)."""
        self.relayed.done(ended=False, gone_room=None)


async def authenticated(channel: RelayedChannel, token: str) -> bool:
    """Take the principal of the token the door relayed; False: refused (the socket is
    handed back to the door)."""
    try:
        principal = await channel.app[TOKENS].verify_access(token)
    except TokenError as exc:  # (the door checked it a moment ago)
        channel.error(exc.code, f"{exc.message}: send auth with a fresh token")
        channel.relayed.done(ended=True, gone_room=None)
        return False
    channel.principal, channel.token = principal, token
    return True
