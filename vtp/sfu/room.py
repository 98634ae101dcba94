"""A room: peers, their live publications, the active speaker, and the close timer."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING

from vtp.sfu import allocation, events
from vtp.sfu.downconnection import DownConnection
from vtp.sfu.errors import SfuError
from vtp.sfu.ice import IceSettings
from vtp.sfu.peer import Peer
from vtp.sfu.speaker import SpeakerDetector
from vtp.sfu.talk import TalkMeter
from vtp.sfu.taps import StreamInfo, TrackInfo
from vtp.sfu.upconnection import UpConnection
from vtp.sfu.uptrack import Tap, TapCallback, UpTrack

if TYPE_CHECKING:
    from vtp.sfu.service import Sfu

logger = logging.getLogger(__name__)

MAX_PEER_ID = 128


class Room:
    def __init__(self, sfu: Sfu, name: str, settings: IceSettings) -> None:
        self.sfu = sfu
        self.name = name
        self.settings = settings
        self.peers: dict[str, Peer] = {}
        self._publications: dict[str, UpConnection] = {}  # answered, not closed
        self._ready: set[str] = set()  # connected and announced
        self.speaker = SpeakerDetector(self._speaker_changed)
        self.talk = TalkMeter(time.monotonic())
        self.empty_since: float | None = None
        self.closed = False
        self._last_allocation = 0.0
        self._needed: dict[str, tuple[str, ...]] = {}  # track id -> rids (LayersNeeded)
        # the node this room's publications are relayed from (a cascade's edge: only its
        # relay peers publish here), None where the room itself lives
        self.origin: str | None = None

    # --- membership ----------------------------------------------------------------------

    def join(self, peer_id: str | None = None, display: str = "", *, relay: bool = False) -> Peer:
        """A new peer. ``relay``: another node's end of a cascade (on the origin it
        subscribes for that node; on an edge it publishes what the origin sends)."""
        if self.closed:
            raise SfuError("bad-state", "room is closed")
        peer_id = peer_id or uuid.uuid4().hex[:12]
        if not isinstance(peer_id, str) or len(peer_id) > MAX_PEER_ID:
            raise SfuError("bad-request", "invalid peer id")
        if peer_id in self.peers:
            raise SfuError("exists", f"peer {peer_id!r} is already in the room")
        peer = Peer(self, peer_id, display, relay=relay)
        self.peers[peer_id] = peer
        self.empty_since = None
        self.emit(events.PeerJoined(self.name, peer_id, display))
        return peer

    async def remove_peer(self, peer: Peer, reason: str) -> None:
        if self.peers.get(peer.id) is not peer:
            return
        del self.peers[peer.id]
        await peer.close_all(reason)
        if self.speaker.current == peer.id:
            self.speaker.current = None
            self.emit(events.ActiveSpeaker(self.name, None))
        self.emit(events.PeerLeft(self.name, peer.id, reason))
        if not self.peers:
            self.empty_since = asyncio.get_running_loop().time()

    # --- publications ----------------------------------------------------------------------

    def publication(self, stream_id: str) -> UpConnection | None:
        return self._publications.get(stream_id)

    def streams(self) -> list[StreamInfo]:
        return [
            StreamInfo(
                up.id,
                up.peer.id,
                up.label,
                tuple(TrackInfo(t.id, t.kind, t.mime_type) for t in up.tracks),
            )
            for up in self._publications.values()
            if up.id in self._ready
        ]

    def publication_added(self, up: UpConnection) -> None:
        self._publications[up.id] = up

    def publication_ready(self, up: UpConnection) -> None:
        if up.closed or up.peer.left or up.id not in self._publications:
            return
        self._ready.add(up.id)
        self.emit(
            events.StreamAdded(
                self.name, up.peer.id, up.id, up.label, tuple(t.kind for t in up.tracks)
            )
        )
        for track in up.tracks:
            self.emit(events.TrackAdded(self.name, up.peer.id, up.id, track.id, track.kind))

    def publication_closed(self, up: UpConnection) -> None:
        if self._publications.pop(up.id, None) is None:
            return
        announced = up.id in self._ready
        self._ready.discard(up.id)
        # every subscription to this stream ends with it
        for peer in list(self.peers.values()):
            for conn in list(peer.connections.values()):
                if getattr(conn, "up", None) is up:
                    conn.schedule_close("stream ended")
        if not announced:
            return
        for track in up.tracks:
            self.emit(events.TrackRemoved(self.name, up.peer.id, up.id, track.id, track.kind))
        self.emit(events.StreamRemoved(self.name, up.peer.id, up.id))

    def track(self, track_id: str) -> UpTrack | None:
        for up in self._publications.values():
            for track in up.tracks:
                if track.id == track_id:
                    return track
        return None

    def view_needed(self, stream_id: str, track_id: str) -> tuple[int, int, bool] | None:
        """How the subscribers of a video show it, merged (what a cascade's edge asks
        its origin for, so that the layer relayed covers them all): the largest rendered
        size (0: no limit), and whether any shows it at all; None while it has no
        subscriber (nothing to say yet)."""
        downs = [
            down
            for peer in self.peers.values()
            for conn in peer.connections.values()
            if isinstance(conn, DownConnection) and conn.stream_id == stream_id
            for down in conn.tracks
            if down.track.id == track_id and not down.closed
        ]
        if not downs:
            return None
        shown = [d for d in downs if d.visible]
        if not shown:
            return (0, 0, False)
        width = 0 if any(d.max_width == 0 for d in shown) else max(d.max_width for d in shown)
        height = 0 if any(d.max_height == 0 for d in shown) else max(d.max_height for d in shown)
        return (width, height, True)

    def add_tap(self, track_id: str, callback: TapCallback) -> Tap:
        """Receive every packet of a live track in-process (recorder)."""
        track = self.track(track_id)
        if track is None:
            raise SfuError("not-found", f"no track {track_id!r}")
        return track.add_tap(callback)

    # --- periodic work ------------------------------------------------------------------

    def tick(self, now: float) -> None:
        for up in list(self._publications.values()):
            try:
                up.tick(now)
            except Exception:
                logger.exception("publication %s failed in tick; closing it", up.id)
                up.schedule_close("internal error")
        for peer in list(self.peers.values()):
            if now - peer.allocator.last_run >= allocation.INTERVAL_S:
                try:
                    peer.allocate(now)
                except Exception:
                    logger.exception("layer allocation for peer %s failed", peer.id)
        if now - self._last_allocation >= allocation.INTERVAL_S / 2:
            self._last_allocation = now
            self._announce_needed_layers()

    def _announce_needed_layers(self) -> None:
        """Dynacast: LayersNeeded for each ready simulcast track whose set changed."""
        live: set[str] = set()
        for up in self._publications.values():
            if up.id not in self._ready:
                continue
            for track in up.tracks:
                if not track.simulcast:
                    continue
                live.add(track.id)
                rids = track.needed_layers()
                if self._needed.get(track.id) != rids:
                    self._needed[track.id] = rids
                    self.emit(events.LayersNeeded(self.name, up.peer.id, up.id, track.id, rids))
        for gone in [t for t in self._needed if t not in live]:
            del self._needed[gone]

    def speaker_tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        scores: dict[str, float] = {}
        voiced: dict[str, float] = {}
        for up in self._publications.values():
            for track in up.tracks:
                if track.kind == "audio":
                    score, share = track.level.take()
                    peer_id = up.peer.id
                    scores[peer_id] = max(score, scores.get(peer_id, 0.0))
                    voiced[peer_id] = max(share, voiced.get(peer_id, 0.0))
        self.speaker.update(scores)
        self.talk.update(voiced, now)

    def _speaker_changed(self, peer_id: str | None) -> None:
        self.emit(events.ActiveSpeaker(self.name, peer_id))

    async def reap(self, now: float, silence_s: float) -> None:
        for peer in list(self.peers.values()):
            if not peer.alive(now, silence_s):
                await self.remove_peer(peer, "timeout")

    def emit(self, event: events.Event) -> None:
        self.sfu.bus.emit(event)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for peer in list(self.peers.values()):
            await self.remove_peer(peer, "room closed")
        self.emit(events.RoomClosed(self.name))

    def stats(self) -> dict[str, object]:
        return {
            "name": self.name,
            "peers": [p.stats() for p in self.peers.values()],
            "streams": [
                {
                    "id": s.id,
                    "peer": s.peer_id,
                    "label": s.label,
                    "tracks": [t.id for t in s.tracks],
                }
                for s in self.streams()
            ],
            "active_speaker": self.speaker.current,
        }
