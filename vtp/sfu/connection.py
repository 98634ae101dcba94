"""One WebRTC peer connection carrying one direction of one stream (Galene's model).

* :class:`UpConnection` - a publication: the client offers, the server answers; its
  decrypted RTP is routed by SSRC (learned from the offer or from mid/payload type) to
  :class:`~vtp.sfu.uptrack.UpTrack` objects.
* :class:`DownConnection` - a subscription to one publication: the server offers one
  sendonly transceiver per up track, the client answers; each becomes a
  :class:`~vtp.sfu.downtrack.DownTrack`.

aiortc's RTCPeerConnection does ICE/DTLS/SRTP/SDP; its media objects never see a packet
(see :mod:`vtp.sfu.aiortc_hooks`). Any failure closes only this connection.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc import (
    MediaStreamTrack,
    RTCIceCandidate,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from vtp.sfu import aiortc_hooks as hooks
from vtp.sfu import codecs, codecsdp, events, negotiation, rtcp
from vtp.sfu.arrival import ReceiveTimes
from vtp.sfu.codecs import Codec
from vtp.sfu.downtrack import DownTrack, ExtensionIds
from vtp.sfu.errors import SfuError
from vtp.sfu.ice import IceSettings
from vtp.sfu.rtp import URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID, is_rtcp, parse_rtp
from vtp.sfu.twcc import FEEDBACK_INTERVAL_S, TransportFeedback
from vtp.sfu.uptrack import UpTrack

if TYPE_CHECKING:
    from vtp.sfu.peer import Peer

logger = logging.getLogger(__name__)

# what UpTrack / DownTrack count, summed into the process-wide totals
UP_COUNTERS = ("packets", "bytes", "forwarded", "dropped", "nacks_sent", "plis_sent", "keyframes")
DOWN_COUNTERS = ("packets", "octets", "retransmitted", "nacks_received", "plis_received")
REMB_INTERVAL_S = 0.5
MAX_REMOTE_CANDIDATES = 32
RR_INTERVAL_S = 1.0


class Connection:
    """What up and down connections share: the aiortc peer connection, liveness, close."""

    kind = "connection"

    def __init__(self, peer: Peer, settings: IceSettings) -> None:
        self.id = uuid.uuid4().hex[:16]
        self.peer = peer
        self.settings = settings
        self.pc = RTCPeerConnection(settings.server_configuration())
        self.sender: hooks.RawSender | None = None
        self.state = "new"
        self.closed = False
        self.close_reason = ""
        self.rx_packets = 0  # every SRTP/SRTCP packet received (liveness)
        self.rtcp_ssrc = random.getrandbits(32)
        self._last_rx_seen = 0
        self._silent_since: float | None = None
        self._closing: asyncio.Task[None] | None = None
        self._remote_candidates = 0

        @self.pc.on("connectionstatechange")
        def _on_state() -> None:
            self._on_state(self.pc.connectionState)

    def _prepare_transports(self) -> None:
        for dtls in hooks.dtls_transports(self.pc):
            if not hooks.media_taken_over(dtls):
                times = ReceiveTimes()
                hooks.take_over_media(dtls, self._rtp_in, self._rtcp_in, times)
                hooks.accept_rsa_peers(dtls)
                if self.settings.udp_port is not None:
                    mux = self.peer.room.sfu.mux
                    if mux is None:
                        raise ConnectionError("the SFU is not started (its UDP port is closed)")
                    hooks.use_lite_connection(dtls, mux.connection(times))
                else:
                    hooks.configure_gathering(
                        dtls,
                        self.settings.addresses,
                        self.settings.announce_address,
                        self.settings.port_range,
                    )
                    hooks.tolerant_consent(dtls, self.settings.consent_timeout_s)
                    hooks.stamp_arrivals(dtls, times)
                hooks.on_dtls_state(dtls, self._dtls_state_callback(dtls))

    def _dtls_state_callback(self, dtls: Any) -> Callable[[str], None]:
        def changed(state: str) -> None:
            self._on_dtls_state(dtls, state)

        return changed

    def _rtp_in(self, data: bytes, arrival_ns: int) -> None:
        self.rx_packets += 1
        try:
            self.receive_rtp(data, arrival_ns)
        except Exception:
            logger.exception(
                "%s %s: dropping an RTP packet that broke the handler", self.kind, self.id
            )

    def _rtcp_in(self, data: bytes) -> None:
        self.rx_packets += 1
        try:
            self.receive_rtcp(data)
        except Exception:
            logger.exception("%s %s: dropping RTCP that broke the handler", self.kind, self.id)

    def receive_rtp(self, data: bytes, arrival_ns: int = 0) -> None:
        """An RTP packet that arrived at ``arrival_ns`` (monotonic; 0: now)."""

    def receive_rtcp(self, data: bytes) -> None:
        pass

    def _on_dtls_state(self, dtls: Any, state: str) -> None:
        if state == "connected" and self.sender is None:
            try:
                self.sender = hooks.RawSender(dtls)
            except ConnectionError:
                return
            self.on_connected()
        elif state in ("closed", "failed"):
            self.schedule_close(f"dtls {state}")

    def _on_state(self, state: str) -> None:
        self.state = state
        self.peer.connection_state_changed(self, state)
        if state in ("failed", "closed"):
            self.schedule_close(f"connection {state}")

    def on_connected(self) -> None:
        pass

    def send_rtcp(self, data: bytes) -> int:
        sender = self.sender
        if sender is None:
            return 0
        return sender.send_rtcp(data)

    async def add_ice_candidate(
        self, candidate: str | None, sdp_mid: str | None, index: int | None
    ) -> None:
        if not candidate:
            await self.pc.addIceCandidate(None)
            return
        text = candidate[len("candidate:") :] if candidate.startswith("candidate:") else candidate
        try:
            parsed: RTCIceCandidate = candidate_from_sdp(text)
            parsed.port = int(parsed.port)
            if not 0 < parsed.port < 65536 or len(text) > 512:
                raise ValueError("bad port or length")
        except Exception as exc:
            raise SfuError("bad-candidate", f"malformed ICE candidate: {exc!r}") from None
        if str(parsed.protocol).lower() != "udp":
            return  # only UDP is served; TCP candidates are ignored, not an error
        self._remote_candidates += 1
        if self._remote_candidates > MAX_REMOTE_CANDIDATES:
            # each candidate makes the server send STUN checks to an address of the
            # client's choosing: bounded
            raise SfuError("bad-candidate", "too many ICE candidates")
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = index if index is not None or sdp_mid is not None else 0
        try:
            await self.pc.addIceCandidate(parsed)
        except Exception as exc:
            raise SfuError("bad-candidate", f"ICE candidate refused: {exc!r}") from None

    def check_alive(self, now: float, timeout: float) -> bool:
        """False once connected but silent for ``timeout`` seconds (or never connected
        within ``timeout`` of creation)."""
        if self.rx_packets != self._last_rx_seen:
            self._last_rx_seen = self.rx_packets
            self._silent_since = now
            return True
        if self._silent_since is None:
            self._silent_since = now
        return now - self._silent_since < timeout

    def schedule_close(self, reason: str) -> None:
        if self._closing is None and not self.closed:
            self._closing = asyncio.ensure_future(self.close(reason))

    async def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        try:
            self.on_close(reason)
        except Exception:
            logger.exception("%s %s: cleanup failed", self.kind, self.id)
        if self.sender is not None:
            self.sender.close()
        try:
            await self.pc.close()
        except Exception:
            logger.exception("%s %s: closing the peer connection failed", self.kind, self.id)
        # (together, with no await between: a scrape never counts this twice or not at all)
        self.peer.room.sfu.retire(self.counters())
        self.peer.connection_closed(self, reason)

    def on_close(self, reason: str) -> None:
        pass

    def stats(self) -> dict[str, object]:
        return {"id": self.id, "type": self.kind, "state": self.state}

    def counters(self) -> dict[str, int]:
        """Monotonic counters for the process-wide totals (metrics)."""
        return {}

    def tick(self, now: float) -> None:
        pass


class UpConnection(Connection):
    """A publication (client -> server)."""

    kind = "publication"

    def __init__(self, peer: Peer, settings: IceSettings, label: str = "") -> None:
        super().__init__(peer, settings)
        self.label = label
        self.tracks: list[UpTrack] = []
        self._by_ssrc: dict[int, UpTrack] = {}
        self._by_mid: dict[bytes, UpTrack] = {}
        self._by_pt: dict[int, UpTrack] = {}
        self._by_rid: dict[bytes, UpTrack] = {}  # simulcast layers
        self._rid_id = 0
        self._audio_level_id = 0
        self._mid_id = 0
        self._twcc_id = 0
        # transport-wide congestion control feedback, when the publisher offered it
        self.feedback: TransportFeedback | None = None
        self._last_feedback = 0.0
        self._last_remb = 0.0
        self._last_rr = 0.0
        self.unrouted = 0
        self.answer_sdp = ""
        self.codecs: dict[str, Codec] = {}  # track id -> the codec it is sent with

    async def start(self, offer_sdp: str) -> str:
        """Answer the publisher's offer; raises SfuError (and closes) on bad input."""
        try:
            sdp = negotiation.sanitize_offer(offer_sdp)
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp.text(), type="offer"))
            self._prepare_transports()
            sections = {m.mid: m for m in sdp.media}
            self._rid_id = negotiation.rid_extension_ids(sdp)[0]
            for transceiver in self.pc.getTransceivers():
                negotiated = hooks.negotiated_codecs(transceiver)
                if not negotiated or transceiver.mid is None:
                    continue
                codec = negotiated[0]
                section = sections.get(transceiver.mid)
                rids = section.rids if section is not None and self._rid_id else []
                # simulcast layers come without a=ssrc lines: learned from their rids
                ssrc = section.ssrcs[0] if section and section.ssrcs and not rids else None
                # aiortc negotiated a stand-in (codecsdp): the real codec is the offer's
                real = section.codec if section and section.codec else None
                track = None
                for rid in rids or [""]:
                    layer = UpTrack(
                        track_id=f"{self.id}-{transceiver.mid}",
                        kind=transceiver.kind,
                        mime_type=real.mime_type if real else codec.mime_type,
                        clock_rate=codec.clock_rate,
                        payload_type=codec.payload_type,
                        mid=transceiver.mid,
                        ssrc=ssrc,
                        send_rtcp=self.send_rtcp,
                        rtcp_ssrc=self.rtcp_ssrc,
                        rid=rid,
                    )
                    if track is None:
                        track = layer
                    else:
                        track.add_layer(layer)
                    if rid:
                        self._by_rid[rid.encode()] = layer
                assert track is not None
                self.tracks.append(track)
                if real is not None:
                    self.codecs[track.id] = real
                if ssrc is not None:
                    self._by_ssrc[ssrc] = track
                self._by_mid[transceiver.mid.encode()] = track
                self._by_pt[codec.payload_type] = track
                ext = hooks.negotiated_extensions(transceiver)
                self._mid_id = ext.get(URI_MID, self._mid_id)
                if transceiver.kind == "audio":
                    self._audio_level_id = ext.get(URI_AUDIO_LEVEL, 0)
            if not self.tracks:
                raise SfuError("bad-sdp", "nothing to publish")
            answer = await self.pc.createAnswer()
            text = negotiation.add_opus_fec(answer.sdp)
            await self.pc.setLocalDescription(RTCSessionDescription(sdp=text, type="answer"))
            self.answer_sdp = negotiation.add_bitrate_hints(
                self._real_codecs(negotiation.add_opus_fec(self.pc.localDescription.sdp))
            )
            # aiortc never sees transport-cc (its media path is ours): only the client's
            # copy of the answer accepts it
            self.answer_sdp = negotiation.add_simulcast(self.answer_sdp, sdp)
            self._twcc_id = negotiation.transport_cc_id(sdp)
            if self._twcc_id:
                self.answer_sdp = negotiation.add_transport_cc(self.answer_sdp, self._twcc_id)
                self.feedback = TransportFeedback(self.rtcp_ssrc)
        except SfuError:
            await self.close("bad offer")
            raise
        except ConnectionError as exc:
            await self.close("no transport")
            raise SfuError("unavailable", f"could not open a transport: {exc}") from None
        except Exception as exc:
            await self.close("bad offer")
            raise SfuError("bad-sdp", f"offer rejected: {exc.__class__.__name__}: {exc}") from None
        return self.answer_sdp

    def _real_codecs(self, answer_text: str) -> str:
        """aiortc's answer with each video track's real codec in place of the stand-in."""
        sdp = negotiation.parse(answer_text)
        for track in self.tracks:
            codec = self.codecs.get(track.id)
            if codec is not None and track.video:
                codecsdp.write_codec(sdp, track.mid, codec, codecs.answer_parameters(codec))
        return sdp.text()

    def codec_of(self, track: UpTrack) -> Codec | None:
        return self.codecs.get(track.id)

    def receive_rtp(self, data: bytes, arrival_ns: int = 0) -> None:
        p = parse_rtp(data, self._audio_level_id, self._mid_id, self._twcc_id, self._rid_id)
        if p is None:
            self.unrouted += 1
            return
        if p.twcc >= 0 and self.feedback is not None:
            # every numbered packet counts for congestion control, forwarded or not
            # (padding-only bandwidth probes included)
            feedback = self.feedback
            feedback.record(
                p.twcc, p.ssrc, feedback.us_at(arrival_ns) if arrival_ns else feedback.now_us()
            )
        track = self._by_ssrc.get(p.ssrc)
        if track is None:
            track = self._route_new_ssrc(p.ssrc, p.mid, p.payload_type, p.rid)
            if track is None:
                self.unrouted += 1
                return
        if p.payload_type != track.payload_type:
            track.discard(p)  # not negotiated: dropped, its sequence number skipped
            return
        track.receive(p)

    def _route_new_ssrc(
        self, ssrc: int, mid: bytes | None, pt: int, rid: bytes | None = None
    ) -> UpTrack | None:
        """Learn which track (or simulcast layer, by its rid: the SSRC is kept once
        learned, as Chromium stops sending the rid) a new SSRC carries."""
        track = self._by_rid.get(rid) if rid is not None else None
        if track is None:
            track = self._by_mid.get(mid) if mid is not None else None
            if track is None:
                track = self._by_pt.get(pt)
                if track is None or (track.ssrc is not None and track.ssrc in self._by_ssrc):
                    return None
            if track.simulcast:
                return None  # a layer is known by its rid only
        if len(self._by_ssrc) >= 16:
            return None
        if track.ssrc is not None:
            self._by_ssrc.pop(track.ssrc, None)
        track.ssrc = ssrc
        self._by_ssrc[ssrc] = track
        return track

    def receive_rtcp(self, data: bytes) -> None:
        for packet in rtcp.parse_rtcp(data):
            if isinstance(packet, rtcp.SenderReport):
                track = self._by_ssrc.get(packet.ssrc)
                if track is not None:
                    track.on_sender_report(packet.ntp, packet.rtp_ts)

    @property
    def layers(self) -> list[UpTrack]:
        """Every incoming RTP stream: the tracks and their simulcast layers."""
        return [layer for track in self.tracks for layer in track.layers]

    def on_connected(self) -> None:
        for track in self.layers:
            if track.downs or track.taps:
                track.request_keyframe()
        self.peer.publication_ready(self)

    def tick(self, now: float) -> None:
        if self.sender is None or self.closed:
            return
        for layer in self.layers:
            layer.tick(now)
        if self.feedback is not None and now - self._last_feedback >= FEEDBACK_INTERVAL_S:
            self._last_feedback = now
            for packet in self.feedback.build():
                self.send_rtcp(packet)
        if now - self._last_remb >= REMB_INTERVAL_S:
            self._last_remb = now
            for track in self.tracks:
                ssrcs = [layer.ssrc for layer in track.layers if layer.ssrc is not None]
                if track.video and ssrcs:
                    self.send_rtcp(
                        rtcp.build_remb(self.rtcp_ssrc, track.bitrate_for_publisher(now), ssrcs)
                    )
        if now - self._last_rr >= RR_INTERVAL_S:
            self._last_rr = now
            blocks = [b for t in self.layers if (b := t.report_block(now)) is not None]
            if blocks:
                self.send_rtcp(rtcp.build_rr(self.rtcp_ssrc, blocks))

    def on_close(self, reason: str) -> None:
        for track in self.layers:
            for down in list(track.downs):
                down.close()
            track.close()

    def counters(self) -> dict[str, int]:
        totals = {f"up_{name}": 0 for name in UP_COUNTERS}
        for track in self.layers:
            for name in UP_COUNTERS:
                totals[f"up_{name}"] += getattr(track, name)
        totals["twcc_feedback"] = self.feedback.sent if self.feedback is not None else 0
        totals["unrouted"] = self.unrouted
        return totals

    def stats(self) -> dict[str, object]:
        return {
            "id": self.id,
            "type": self.kind,
            "label": self.label,
            "state": self.state,
            "unrouted": self.unrouted,
            "transport_cc": (
                {"recorded": self.feedback.recorded, "feedback_sent": self.feedback.sent}
                if self.feedback is not None
                else None
            ),
            "tracks": [t.stats() for t in self.layers],
        }


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
        by_ssrc = self._by_ssrc
        for packet in rtcp.parse_rtcp(data):
            if isinstance(packet, rtcp.Nack):
                down = by_ssrc.get(packet.media_ssrc)
                if down is not None:
                    down.on_nack(packet.lost)
            elif isinstance(packet, rtcp.Pli):
                down = by_ssrc.get(packet.media_ssrc)
                if down is not None:
                    down.on_keyframe_request()
            elif isinstance(packet, rtcp.Fir):
                for ssrc in packet.media_ssrcs or (packet.sender_ssrc,):
                    down = by_ssrc.get(ssrc)
                    if down is not None:
                        down.on_keyframe_request()
            elif isinstance(packet, rtcp.Remb):
                for ssrc in packet.ssrcs:
                    down = by_ssrc.get(ssrc)
                    if down is not None:
                        down.on_remb(packet.bitrate)
            elif isinstance(packet, (rtcp.ReceiverReport, rtcp.SenderReport)):
                for block in packet.reports:
                    down = by_ssrc.get(block.ssrc)
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
