"""A publication (client -> server): the publisher's offer answered, its RTP routed by
SSRC to :class:`~vtp.sfu.uptrack.UpTrack` objects (a simulcast video's layers by rid),
and what the server sends it back: receiver reports, REMB, transport-cc feedback, NACKs
and PLIs (these two from its tracks' ticks)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aiortc import RTCSessionDescription

from vtp.sfu import aiortc_hooks as hooks
from vtp.sfu import codecs, codecsdp, negotiation, rtcp
from vtp.sfu.codecs import Codec
from vtp.sfu.connection import Connection
from vtp.sfu.errors import SfuError
from vtp.sfu.ice import IceSettings
from vtp.sfu.rtp import URI_AUDIO_LEVEL, URI_MID, parse_rtp
from vtp.sfu.twcc import FEEDBACK_INTERVAL_S, TransportFeedback
from vtp.sfu.uptrack import UpTrack

if TYPE_CHECKING:
    from vtp.sfu.peer import Peer

# what UpTrack counts, summed into the process-wide totals
UP_COUNTERS = ("packets", "bytes", "forwarded", "dropped", "nacks_sent", "plis_sent", "keyframes")
REMB_INTERVAL_S = 0.5
RR_INTERVAL_S = 1.0


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
            handler = FROM_PUBLISHER.get(type(packet))
            if handler is not None:
                handler(self, packet)

    def _on_sender_report(self, packet: rtcp.SenderReport) -> None:
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


# RTCP from the publisher, by packet type (others are ignored)
FROM_PUBLISHER: Mapping[type, Callable[[UpConnection, Any], None]] = MappingProxyType(
    {rtcp.SenderReport: UpConnection._on_sender_report}
)

__all__ = ["UpConnection"]
