"""A down track: one outgoing (server -> subscriber) RTP stream fed by an up track.

Per packet (in C, :mod:`vtp.sfu.fastpath`) a fresh 12-byte header is written (this
subscriber's SSRC, payload type, sequence number and timestamp, each with a fixed offset
from the up track's continuous numbering) with this subscriber's header extensions, then
the payload; the result is protected and sent. Video starts at a keyframe; offsets are
chosen at (re)start so numbering continues from whatever this subscriber last received."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vtp.sfu import fastpath, rtcp
from vtp.sfu.estimator import DownEstimate
from vtp.sfu.rtp import abs_send_time_now

if TYPE_CHECKING:
    from vtp.sfu.aiortc_hooks import RawSender
    from vtp.sfu.uptrack import UpPacket, UpTrack


@dataclass(frozen=True, slots=True)
class ExtensionIds:
    """The header-extension ids one subscriber negotiated (0: not negotiated) and the mid
    its transceiver has; the SFU writes exactly these extensions on its packets."""

    mid_id: int
    mid: str
    audio_level_id: int
    abs_send_time_id: int


class DownTrack:
    """Numbering (``start_useq``, ``seq_offset``, ``ts_offset``, ``highest_useq``) and
    counters live in :attr:`state`, the C ``struct vtp_down`` the up track's fan-out
    writes through; Python sets the offsets when the down track (re)starts."""

    def __init__(
        self,
        up: UpTrack,
        ssrc: int,
        payload_type: int,
        extensions: ExtensionIds,
        send_rtcp: Callable[[bytes], int],
    ) -> None:
        self.up = up
        self.kind = up.kind
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.state: Any = fastpath.new_down(
            ssrc,
            payload_type,
            extensions.mid_id,
            extensions.mid,
            extensions.audio_level_id,
            extensions.abs_send_time_id,
        )
        self.sender: RawSender | None = None
        self._send_rtcp = send_rtcp
        self.estimate = DownEstimate()
        self.on_failure: Callable[[], None] | None = None
        self.waiting = True
        # last written values, so a restart continues the numbering
        self._last_seq = random.getrandbits(16)
        self._last_ts = random.getrandbits(32)
        self._last_time = 0.0
        self.state.highest_useq = -1
        self.retransmitted = 0
        self.nacks_received = 0
        self.plis_received = 0
        self.fraction_lost = 0
        self.packets_lost = 0
        # the payload rate sent, measured between REMBs (what a REMB is compared with)
        self._rate_time = 0.0
        self._rate_octets = 0
        self._sent_bps = 0.0
        self.closed = False

    def attach(self, sender: RawSender) -> None:
        """Send through this connection's sender (once it is connected)."""
        self.sender = sender
        self.state.sink = sender.sink

    # numbering and counters, read from the C state
    @property
    def start_useq(self) -> int:
        return int(self.state.start_useq)

    @property
    def highest_useq(self) -> int:
        return int(self.state.highest_useq)

    @property
    def seq_offset(self) -> int:
        return int(self.state.seq_offset)

    @property
    def ts_offset(self) -> int:
        return int(self.state.ts_offset)

    @property
    def packets(self) -> int:
        return int(self.state.packets)

    @property
    def octets(self) -> int:
        return int(self.state.octets)

    # --- the packet path -------------------------------------------------------------

    def write(self, packet: UpPacket, abs_send_time: int) -> None:
        """A packet for a down track that is not in its up track's fan-out yet: video
        starts at a keyframe (then the up track's fan-out takes over)."""
        if self.waiting:
            if self.up.video and not packet.keyframe:
                return
            self._start(packet)
        fastpath.write(
            self.state,
            packet.marker,
            packet.useq,
            packet.uts & 0xFFFFFFFF,
            packet.audio_level,
            abs_send_time,
            packet.payload,
            len(packet.payload),
        )

    def _start(self, packet: UpPacket) -> None:
        state = self.state
        state.start_useq = packet.useq
        state.highest_useq = packet.useq - 1
        now = time.monotonic()
        state.seq_offset = (self._last_seq + 1 - packet.useq) & 0xFFFF
        elapsed = int((now - self._last_time) * self.up.clock_rate) if self._last_time else 0
        step = max(1, min(elapsed, 5 * self.up.clock_rate))
        state.ts_offset = (self._last_ts + step - packet.uts) & 0xFFFFFFFF
        self.waiting = False
        self.up.down_started(self)

    def restart(self) -> None:
        """Wait for the next keyframe and continue numbering from where we are (used when
        the source changes)."""
        if not self.waiting and self.highest_useq >= 0:
            self._last_seq = (self.highest_useq + self.seq_offset) & 0xFFFF
            self._last_ts = (self.up.ts.highest + self.ts_offset) & 0xFFFFFFFF
            self._last_time = time.monotonic()
        if not self.waiting:
            self.waiting = True
            self.up.down_stopped(self)

    # --- RTCP from the subscriber ---------------------------------------------------------

    def on_nack(self, lost: tuple[int, ...]) -> None:
        """Answer from the up track's cache; what it lacks is asked of the publisher."""
        if self.waiting:
            return
        self.nacks_received += len(lost)
        highest_out = (self.highest_useq + self.seq_offset) & 0xFFFF
        cache = self.up.cache
        for seq in lost:
            useq = self.highest_useq - ((highest_out - seq) & 0xFFFF)
            if useq < self.start_useq:
                continue
            packet = cache.get(useq)
            if packet is None:
                self.up.nack_upstream(useq)
                continue
            fastpath.send(
                self.state,
                packet.marker,
                useq,
                packet.uts & 0xFFFFFFFF,
                packet.audio_level,
                abs_send_time_now(),
                packet.payload,
                len(packet.payload),
            )
            self.retransmitted += 1

    def on_keyframe_request(self) -> None:
        self.plis_received += 1
        self.up.request_keyframe()

    def on_report(self, block: rtcp.ReportBlock) -> None:
        self.fraction_lost = block.fraction_lost
        self.packets_lost = block.packets_lost
        self.estimate.on_loss(block.fraction_lost / 256)

    def on_remb(self, bitrate: int) -> None:
        now = time.monotonic()
        octets = self.octets
        elapsed = now - self._rate_time
        if elapsed >= 0.3:
            if self._rate_time:
                self._sent_bps = (octets - self._rate_octets) * 8 / elapsed
            self._rate_time, self._rate_octets = now, octets
        self.estimate.on_remb(bitrate, now, self._sent_bps)

    # --- RTCP to the subscriber -----------------------------------------------------------

    def send_sender_report(self, ntp: int, uts: int) -> None:
        """The publisher's NTP/RTP pair in this subscriber's timestamp space, with this
        down track's own packet and octet counts."""
        if self.waiting or self.closed:
            return
        self._send_rtcp(
            rtcp.build_sr(
                self.ssrc, ntp, (uts + self.ts_offset) & 0xFFFFFFFF, self.packets, self.octets
            )
        )

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.up.remove_down(self)

    def fail(self) -> None:
        """Sending raised: detach, and let the connection close itself."""
        self.close()
        if self.on_failure is not None:
            self.on_failure()

    def stats(self) -> dict[str, object]:
        sender = self.sender
        return {
            "track": self.up.id,
            "kind": self.kind,
            "ssrc": self.ssrc,
            "packets": self.packets,
            "bytes": self.octets,
            "retransmitted": self.retransmitted,
            "nacks_received": self.nacks_received,
            "plis_received": self.plis_received,
            "fraction_lost": self.fraction_lost,
            "packets_lost": self.packets_lost,
            "estimate": self.estimate.value(time.monotonic()),
            "started": not self.waiting,
            "send_errors": sender.send_errors if sender is not None else 0,
        }
