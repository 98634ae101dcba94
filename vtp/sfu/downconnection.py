"""A subscription (server -> client) to one publication: one sendonly transceiver per
up track (the server offers, or answers a WHEP-style client offer), each a
:class:`~vtp.sfu.downtrack.DownTrack`, and the subscriber's RTCP (NACK, PLI/FIR, REMB,
reports) dispatched by packet type to them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aiortc import MediaStreamTrack, RTCRtpSender, RTCSessionDescription

from vtp.sfu import aiortc_hooks as hooks
from vtp.sfu import codecs, codecsdp, events, negotiation, rtcp
from vtp.sfu.codecs import Codec
from vtp.sfu.connection import Connection
from vtp.sfu.downtrack import DownTrack, ExtensionIds
from vtp.sfu.errors import SfuError
from vtp.sfu.ice import IceSettings
from vtp.sfu.rtp import URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID, is_rtcp
from vtp.sfu.upconnection import UpConnection
from vtp.sfu.uptrack import UpTrack

if TYPE_CHECKING:
    from vtp.sfu.peer import Peer

logger = logging.getLogger(__name__)

# what DownTrack counts, summed into the process-wide totals
DOWN_COUNTERS = ("packets", "octets", "retransmitted", "nacks_received", "plis_received")


class _SilentTrack(MediaStreamTrack):
    """The server-side sender's track: recv() never returns, so aiortc never builds an
    encoder for it (packets bypass the sender entirely)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Any:
        await asyncio.get_running_loop().create_future()


def _capabilities(kind: str) -> list[Any]:
    wanted = "audio/opus" if kind == "audio" else "video/vp8"
    caps = RTCRtpSender.getCapabilities(kind)
    return [c for c in caps.codecs if c.mimeType.lower() == wanted]


class DownConnection(Connection):
    """A subscription (server -> client) to one publication."""

    kind = "subscription"

    def __init__(self, peer: Peer, settings: IceSettings, up: UpConnection) -> None:
        super().__init__(peer, settings)
        self.up = up
        self.stream_id = up.id
        self.tracks: list[DownTrack] = []
        self._by_ssrc: dict[int, DownTrack] = {}
        self._pending: list[tuple[Any, UpTrack]] = []
        self.offer_sdp = ""
        self.answer_sdp = ""  # when the client offered (start_answer)
        self.answered = False
        # per down track: the highest sequence number the subscriber last reported and
        # how many packets had been sent to it then (is it still receiving?)
        self._reported: dict[int, tuple[int, int]] = {}
        self._receiving_at: float | None = None  # last report showing it receives

    async def start(self) -> str:
        """Create the server's offer for the publication's tracks."""
        try:
            for track in self.up.tracks:
                transceiver = self.pc.addTransceiver(_SilentTrack(track.kind), direction="sendonly")
                transceiver.setCodecPreferences(_capabilities(track.kind))
                self._pending.append((transceiver, track))
            self._prepare_transports()
            offer = await self.pc.createOffer()
            await self.pc.setLocalDescription(
                RTCSessionDescription(sdp=negotiation.add_opus_fec(offer.sdp), type="offer")
            )
            for transceiver, _ in self._pending:
                hooks.silence_sender_rtcp(transceiver.sender)
            self.offer_sdp = self._real_codecs(
                negotiation.add_opus_fec(self.pc.localDescription.sdp)
            )
        except Exception:
            await self.close("offer failed")
            raise
        return self.offer_sdp

    async def accept(self, answer_sdp: str) -> None:
        if self.answered:
            raise SfuError("bad-state", "subscription already answered")
        sdp = negotiation.sanitize_answer(answer_sdp)
        try:
            codecsdp.accept_answer(sdp, self._streams_by_mid())
        except SfuError:
            await self.close("codec not decodable")  # no answer of this client can do
            raise
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp.text(), type="answer"))
        except Exception as exc:
            await self.close("bad answer")
            raise SfuError("bad-sdp", f"answer rejected: {exc.__class__.__name__}: {exc}") from None
        self.answered = True
        self._make_down_tracks()
        if not self.tracks:
            await self.close("nothing negotiated")
            raise SfuError("bad-sdp", "the answer accepts none of the stream's tracks")

    async def start_answer(self, offer_sdp: str) -> str:
        """The client offers (WHEP: recvonly audio/video), the server answers with the
        publication's tracks. Raises SfuError (and closes) on bad input."""
        try:
            streams = {t.kind: c for t in self.up.tracks if (c := self.up.codec_of(t)) is not None}
            sdp = negotiation.sanitize_receive_offer(offer_sdp, streams)
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp.text(), type="offer"))
            self._prepare_transports()
            available = list(self.up.tracks)
            for transceiver in self.pc.getTransceivers():
                track = next((t for t in available if t.kind == transceiver.kind), None)
                if track is None:
                    transceiver.direction = "inactive"
                    continue
                available.remove(track)
                transceiver.direction = "sendonly"
                transceiver.sender.replaceTrack(_SilentTrack(track.kind))
                self._pending.append((transceiver, track))
            if not self._pending:
                raise SfuError("bad-sdp", "the offer receives none of the stream's tracks")
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(
                RTCSessionDescription(sdp=negotiation.add_opus_fec(answer.sdp), type="answer")
            )
            for transceiver, _ in self._pending:
                hooks.silence_sender_rtcp(transceiver.sender)
            self.answered = True
            self._make_down_tracks()
            self.answer_sdp = self._real_codecs(
                negotiation.add_opus_fec(self.pc.localDescription.sdp)
            )
        except SfuError:
            await self.close("bad offer")
            raise
        except Exception as exc:
            await self.close("bad offer")
            raise SfuError("bad-sdp", f"offer rejected: {exc.__class__.__name__}: {exc}") from None
        return self.answer_sdp

    def _streams_by_mid(self) -> dict[str, Codec]:
        """The real codec of each pending transceiver's up track, by mid."""
        out: dict[str, Codec] = {}
        for transceiver, up_track in self._pending:
            codec = self.up.codec_of(up_track)
            if codec is not None and transceiver.mid is not None:
                out[transceiver.mid] = codec
        return out

    def _real_codecs(self, text: str) -> str:
        """The server's SDP with each video track's real codec in place of the stand-in."""
        sdp = negotiation.parse(text)
        for mid, codec in self._streams_by_mid().items():
            codecsdp.write_codec(sdp, mid, codec, codecs.send_parameters(codec))
        return sdp.text()

    def _make_down_tracks(self) -> None:
        for transceiver, up_track in self._pending:
            stand_in = codecsdp.STAND_IN[up_track.kind]
            negotiated = [
                c for c in hooks.negotiated_codecs(transceiver) if c.mime_type == stand_in
            ]
            if not negotiated or transceiver.mid is None:
                continue  # the subscriber declined this track
            ext = hooks.negotiated_extensions(transceiver)
            extensions = ExtensionIds(
                ext.get(URI_MID, 0),
                transceiver.mid,
                ext.get(URI_AUDIO_LEVEL, 0) if up_track.kind == "audio" else 0,
                ext.get(URI_ABS_SEND_TIME, 0),
            )
            down = DownTrack(
                up_track,
                hooks.sender_ssrc(transceiver.sender),
                negotiated[0].payload_type,
                extensions,
                self.send_rtcp,
            )
            down.on_failure = self._down_failed
            self.tracks.append(down)
            self._by_ssrc[down.ssrc] = down

    def _down_failed(self) -> None:
        self.schedule_close("internal error")

    def set_preferences(
        self,
        track_id: str,
        max_width: int = 0,
        max_height: int = 0,
        visible: bool = True,
        max_fps: int = 0,
    ) -> None:
        """How the subscriber shows this video: the rendered size in pixels (0: no
        limit), whether it is visible at all (False: nothing is sent for it; its
        audio is not affected) and the frame rate it needs (0: full; a publisher's
        temporal layers above it are not sent, :mod:`vtp.sfu.temporal`). Simulcast
        tracks get the smallest layer covering the size; the peer's layers are
        reallocated at once."""
        if not isinstance(visible, bool):
            raise SfuError("bad-request", "visible must be true or false")
        for value in (max_width, max_height):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 16384:
                raise SfuError("bad-request", "max_width/max_height: integers 0..16384")
        if isinstance(max_fps, bool) or not isinstance(max_fps, int) or not 0 <= max_fps <= 240:
            raise SfuError("bad-request", "max_fps: an integer 0..240")
        downs = [d for d in self.tracks if d.track.id == track_id and d.kind == "video"]
        if not downs:
            raise SfuError("not-found", f"no video track {track_id!r} in this subscription")
        for down in downs:
            down.max_width = max_width
            down.max_height = max_height
            down.visible = visible
            down.max_fps = max_fps
        self.peer.allocate(time.monotonic())

    def _congested(self) -> None:
        self.peer.allocate(time.monotonic())

    def _layer_changed(self, down: DownTrack, was_paused: bool) -> None:
        room = self.peer.room
        args = (room.name, self.peer.id, self.id, self.stream_id, down.track.id)
        if down.paused:
            room.emit(events.TrackPaused(*args, down.pause_reason or "bandwidth"))
            return
        if was_paused:
            room.emit(events.TrackResumed(*args))
        if down.track.simulcast:
            room.emit(events.LayerChanged(*args, down.rid, down.up.width, down.up.height))

    def on_connected(self) -> None:
        if self.closed or self.up.closed or self.sender is None:
            return
        for down in self.tracks:
            down.attach(self.sender)
            down.on_layer_change = self._layer_changed
            if down.track.simulcast:
                down.on_congestion = self._congested
            down.up.add_down(down)
        if any(down.track.simulcast for down in self.tracks):
            self.peer.allocate(time.monotonic())  # the first layer within the estimate

    def receive_rtp(self, data: bytes, arrival_ns: int = 0) -> None:
        pass  # subscribers send no media on this connection

    def receive_rtcp(self, data: bytes) -> None:
        for packet in rtcp.parse_rtcp(data):
            handler = FROM_SUBSCRIBER.get(type(packet))
            if handler is not None:
                handler(self, packet)

    def _on_nack(self, packet: rtcp.Nack) -> None:
        down = self._by_ssrc.get(packet.media_ssrc)
        if down is not None:
            down.on_nack(packet.lost)

    def _on_pli(self, packet: rtcp.Pli) -> None:
        down = self._by_ssrc.get(packet.media_ssrc)
        if down is not None:
            down.on_keyframe_request()

    def _on_fir(self, packet: rtcp.Fir) -> None:
        for ssrc in packet.media_ssrcs or (packet.sender_ssrc,):
            down = self._by_ssrc.get(ssrc)
            if down is not None:
                down.on_keyframe_request()

    def _on_remb(self, packet: rtcp.Remb) -> None:
        for ssrc in packet.ssrcs:
            down = self._by_ssrc.get(ssrc)
            if down is not None:
                down.on_remb(packet.bitrate)

    def _on_reports(self, packet: rtcp.ReceiverReport | rtcp.SenderReport) -> None:
        for block in packet.reports:
            down = self._by_ssrc.get(block.ssrc)
            if down is not None:
                down.on_report(block)
                self._note_reception(down, block.highest_seq)

    def _note_reception(self, down: DownTrack, highest: int) -> None:
        sent = down.packets
        before = self._reported.get(down.ssrc)
        self._reported[down.ssrc] = (highest, sent)
        # fresh: the subscriber saw newer packets, or nothing newer was sent to it
        if before is None or highest != before[0] or sent == before[1]:
            self._receiving_at = time.monotonic()

    def check_alive(self, now: float, timeout: float) -> bool:
        """Also False when the subscriber still sends RTCP but its reports have shown
        no new packet for ``consent_timeout_s`` while packets were sent to it: a client
        that stopped reading its socket (it may go on answering or sending ICE checks,
        which keeps ICE-lite consent alive for another 30 s)."""
        if not super().check_alive(now, timeout):
            return False
        at = self._receiving_at
        return at is None or now - at < self.settings.consent_timeout_s

    def on_close(self, reason: str) -> None:
        for down in self.tracks:
            down.close()
        if self.sender is not None and self.tracks:
            try:
                self.sender.send_rtcp(rtcp.build_bye([d.ssrc for d in self.tracks]))
            except Exception:
                logger.debug("BYE not sent", exc_info=True)

    def counters(self) -> dict[str, int]:
        totals = {f"down_{name}": 0 for name in DOWN_COUNTERS}
        for down in self.tracks:
            for name in DOWN_COUNTERS:
                totals[f"down_{name}"] += getattr(down, name)
        totals["send_errors"] = self.sender.send_errors if self.sender is not None else 0
        return totals

    def stats(self) -> dict[str, object]:
        return {
            "id": self.id,
            "type": self.kind,
            "stream": self.stream_id,
            "state": self.state,
            "tracks": [d.stats() for d in self.tracks],
        }


SendFn = Callable[[bytes], int]
__all__ = ["Connection", "DownConnection", "UpConnection", "is_rtcp"]


# RTCP from the subscriber, by packet type (others are ignored)
FROM_SUBSCRIBER: Mapping[type, Callable[[DownConnection, Any], None]] = MappingProxyType(
    {
        rtcp.Nack: DownConnection._on_nack,
        rtcp.Pli: DownConnection._on_pli,
        rtcp.Fir: DownConnection._on_fir,
        rtcp.Remb: DownConnection._on_remb,
        rtcp.ReceiverReport: DownConnection._on_reports,
        rtcp.SenderReport: DownConnection._on_reports,
    }
)

__all__ = ["DownConnection"]
