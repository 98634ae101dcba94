"""A peer: one participant of a room, owning its publications and subscriptions."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from vtp.sfu import events
from vtp.sfu.allocation import Allocator
from vtp.sfu.connection import Connection
from vtp.sfu.downconnection import DownConnection
from vtp.sfu.errors import SfuError
from vtp.sfu.upconnection import UpConnection

if TYPE_CHECKING:
    from vtp.sfu.room import Room

logger = logging.getLogger(__name__)

MAX_CONNECTIONS = 64


class Peer:
    def __init__(self, room: Room, peer_id: str, display: str, *, relay: bool = False) -> None:
        self.room = room
        self.relay = relay  # another node's end of a cascade (Room.join)
        self.id = peer_id
        self.display = display
        self.connections: dict[str, Connection] = {}
        self.last_seen = time.monotonic()
        self.left = False
        self.muted: frozenset[str] = frozenset()  # kinds the server withholds
        self.allocator = Allocator()

    # --- API for the signalling layer ---------------------------------------------------

    def touch(self) -> None:
        """Signalling saw this peer alive (keeps a peer without connections in the room)."""
        self.last_seen = time.monotonic()

    async def publish(self, offer_sdp: str, label: str = "") -> UpConnection:
        """Answer a publish offer. The returned publication's ``answer_sdp`` goes back to
        the client; its tracks are announced (StreamAdded/TrackAdded) once connected.

        A relay peer's offer is another node's subscription (a cascade's origin offers
        what it forwards, see :meth:`subscribe`). In a room relayed from another node
        only relay peers publish."""
        self._check_open()
        if self.room.origin is not None and not self.relay:
            raise SfuError(
                "relayed-room",
                f"this node serves a copy of the room, relayed from node {self.room.origin}:"
                " to publish, join again with publish: true",
            )
        conn = UpConnection(self, self.room.settings, label=label)
        self.connections[conn.id] = conn
        await conn.start(offer_sdp)  # closes itself and raises SfuError on bad input
        conn.announced = True
        for track in conn.tracks:  # (no packet can have arrived: the client has no answer)
            track.set_muted(track.kind in self.muted)
        self.room.publication_added(conn)
        return conn

    async def subscribe(self, stream_id: str, offer_sdp: str | None = None) -> DownConnection:
        """Create a subscription to a publication.

        Without ``offer_sdp`` the server offers: send ``offer_sdp`` to the client and
        pass its answer to :meth:`answer`. With the client's (recvonly) offer - WHEP -
        the server answers at once: ``answer_sdp`` goes back to the client.

        A relay peer's subscription (a cascade's origin end) is a full ICE agent on a
        port of its own: the edge that answers it serves its relay publication on its
        usual port, which may be ICE-lite, and two lite agents never pair."""
        self._check_open()
        up = self.room.publication(stream_id)
        if up is None:
            raise SfuError("not-found", f"no stream {stream_id!r}")
        settings = self.room.settings
        if self.relay:
            settings = dataclasses.replace(settings, udp_port=None)
        conn = DownConnection(self, settings, up)
        self.connections[conn.id] = conn
        if offer_sdp is not None:
            await conn.start_answer(offer_sdp)  # closes itself, raises SfuError
        else:
            try:
                await conn.start()
            except SfuError:
                raise
            except Exception as exc:
                raise SfuError("internal", f"could not create the offer: {exc}") from None
        conn.announced = True
        return conn

    async def subscribe_answer(self, stream_id: str, offer_sdp: str) -> DownConnection:
        """WHEP egress: the client's recvonly offer in, a subscription whose
        ``answer_sdp`` goes back to the client (same as ``subscribe(stream_id,
        offer_sdp=...)``)."""
        return await self.subscribe(stream_id, offer_sdp=offer_sdp)

    async def answer(self, subscription_id: str, answer_sdp: str) -> None:
        conn = self.connections.get(subscription_id)
        if not isinstance(conn, DownConnection):
            raise SfuError("not-found", f"no subscription {subscription_id!r}")
        await conn.accept(answer_sdp)

    def set_preferences(
        self,
        subscription_id: str,
        track_id: str,
        max_width: int = 0,
        max_height: int = 0,
        visible: bool = True,
        max_fps: int = 0,
    ) -> None:
        """Adaptive stream: see :meth:`DownConnection.set_preferences`."""
        conn = self.connections.get(subscription_id)
        if not isinstance(conn, DownConnection):
            raise SfuError("not-found", f"no subscription {subscription_id!r}")
        conn.set_preferences(track_id, max_width, max_height, visible, max_fps)

    def allocate(self, now: float) -> None:
        """Give this subscriber's videos their layers (or pauses): vtp.sfu.allocation."""
        speaker = self.room.speaker.current
        downs = [
            (down, conn.up.peer.id == speaker)
            for conn in self.connections.values()
            if isinstance(conn, DownConnection) and conn.sender is not None and not conn.closed
            for down in conn.tracks
            if down.kind == "video" and not down.closed
        ]
        if not downs:
            self.allocator.last_run = now
            return
        for choice in self.allocator.allocate(downs, now):
            down = choice.down
            down.wanted = choice.wanted
            if logger.isEnabledFor(logging.DEBUG) and choice.layer is not (
                down.target or down.current
            ):
                logger.debug(
                    "peer %s: %s -> %s (%s) estimate %d remb %d layers %s",
                    self.id,
                    (down.target or down.current or down.up).rid if not down.paused else "-",
                    choice.layer.rid if choice.layer is not None else "-",
                    choice.reason,
                    down.estimate.value(now, probing=True),
                    down.estimate.remb,
                    [(x.rid, int(x.rate.bps), x.active(now)) for x in down.track.layers],
                )
            down.set_max_temporal(choice.temporal)
            if choice.layer is None:
                if not down.paused:
                    down.pause_reason = choice.reason
                    down.switch_to(None)
            else:
                down.switch_to(choice.layer)

    async def add_ice_candidate(
        self,
        connection_id: str,
        candidate: str | None,
        sdp_mid: str | None = None,
        sdp_mline_index: int | None = 0,
    ) -> None:
        conn = self.connections.get(connection_id)
        if conn is None:
            raise SfuError("not-found", f"no connection {connection_id!r}")
        await conn.add_ice_candidate(candidate, sdp_mid, sdp_mline_index)

    async def close_connection(self, connection_id: str) -> None:
        conn = self.connections.get(connection_id)
        if conn is None:
            raise SfuError("not-found", f"no connection {connection_id!r}")
        await conn.close("closed by peer")

    def set_muted(self, kinds: Iterable[str]) -> None:
        """Server-side mute: the tracks of these kinds ("audio", "video") of every
        publication of this peer, and of those it starts later, are withheld from
        subscribers and taps until unmuted (``set_muted(())``)."""
        self.muted = frozenset(kinds)
        for conn in self.connections.values():
            if isinstance(conn, UpConnection):
                for track in conn.tracks:
                    track.set_muted(track.kind in self.muted)

    async def leave(self, reason: str = "left") -> None:
        await self.room.remove_peer(self, reason)

    # --- callbacks from connections -----------------------------------------------------

    def _check_open(self) -> None:
        if self.left:
            raise SfuError("bad-state", "peer has left")
        if len(self.connections) >= MAX_CONNECTIONS:
            raise SfuError("bad-state", "too many connections")
        self.touch()

    def connection_state_changed(self, conn: Connection, state: str) -> None:
        if conn.announced:
            self.room.emit(events.ConnectionStateChanged(self.room.name, self.id, conn.id, state))

    def publication_ready(self, conn: UpConnection) -> None:
        self.room.publication_ready(conn)

    def connection_closed(self, conn: Connection, reason: str) -> None:
        self.connections.pop(conn.id, None)
        if isinstance(conn, UpConnection):
            self.room.publication_closed(conn)
        elif isinstance(conn, DownConnection) and conn.announced:
            self.room.emit(
                events.SubscriptionClosed(self.room.name, self.id, conn.id, conn.stream_id, reason)
            )

    async def close_all(self, reason: str) -> None:
        self.left = True
        conns = list(self.connections.values())
        if conns:
            await asyncio.gather(*(c.close(reason) for c in conns), return_exceptions=True)

    def alive(self, now: float, timeout: float) -> bool:
        """False when every connection is silent/failed and signalling has not touched
        the peer for ``timeout`` seconds."""
        live = False
        for conn in list(self.connections.values()):
            if conn.check_alive(now, timeout):
                live = True
            else:
                conn.schedule_close("timeout")
        if live:
            self.last_seen = now
        return live or now - self.last_seen < timeout

    def stats(self) -> dict[str, object]:
        return {
            "id": self.id,
            "display": self.display,
            "relay": self.relay,
            "muted": sorted(self.muted),
            "connections": [c.stats() for c in self.connections.values() if hasattr(c, "stats")],
        }
