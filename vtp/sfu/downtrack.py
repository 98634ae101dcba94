"""A down track: one outgoing (server -> subscriber) RTP stream fed by an up track.

Per packet it writes a fresh 12-byte header (this subscriber's SSRC, payload type,
sequence number and timestamp, each with a fixed offset from the up track's continuous
numbering), appends the shared extension+payload bytes, and protects and sends them.
Video starts at a keyframe; offsets are chosen at (re)start so numbering continues from
whatever this subscriber last received."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from vtp.sfu import rtcp
from vtp.sfu.estimator import DownEstimate
from vtp.sfu.rtp import ExtensionWriter

if TYPE_CHECKING:
    from vtp.sfu.uptrack import UpPacket, UpTrack

_writers: dict[tuple[int, str, int, int], ExtensionWriter] = {}


def extension_writer(mid_id: int, mid: str, audio_level_id: int, abs_id: int) -> ExtensionWriter:
    """Shared writers: subscribers with the same negotiation share one (and so one block
    build per packet)."""
    key = (mid_id, mid, audio_level_id, abs_id)
    writer = _writers.get(key)
    if writer is None:
        if len(_writers) > 4096:
            _writers.clear()
        writer = _writers[key] = ExtensionWriter(mid_id, mid, audio_level_id, abs_id)
    return writer


def _not_connected(
    first_byte: int, marker_pt: int, seq: int, ts: int, ssrc: int, body: bytes
) -> int:
    return 0


class DownTrack:
    """The numbering state (``waiting``, ``start_useq``, ``seq_offset``, ``ts_offset``,
    ``highest_useq``) is read by :meth:`UpTrack.forward`, which inlines :meth:`write`'s
    common case."""

    def __init__(
        self,
        up: UpTrack,
        ssrc: int,
        payload_type: int,
        writer: ExtensionWriter,
        send_rtcp: Callable[[bytes], int],
    ) -> None:
        self.up = up
        self.kind = up.kind
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.writer = writer
        self._send_rtcp = send_rtcp
        # set when the connection is up: send(first_byte, marker|pt, seq, ts, ssrc, body)
        self.send: Callable[[int, int, int, int, int, bytes], int] = _not_connected
        self.estimate = DownEstimate()
        self.on_failure: Callable[[], None] | None = None
        self.waiting = True
        self.start_useq = 0
        self.seq_offset = 0
        self.ts_offset = 0
        # last written values, so a restart continues the numbering
        self._last_seq = random.getrandbits(16)
        self._last_ts = random.getrandbits(32)
        self._last_time = 0.0
        self.highest_useq = -1
        self.packets = 0
        self.octets = 0
        self.retransmitted = 0
        self.nacks_received = 0
        self.plis_received = 0
        self.fraction_lost = 0
        self.packets_lost = 0
        self.closed = False

    # --- the packet path -------------------------------------------------------------

    def write(self, packet: UpPacket, first_byte: int, body: bytes) -> None:
        if self.waiting:
            if self.up.video and not packet.keyframe:
                return
            self._start(packet)
        useq = packet.useq
        if useq < self.start_useq:
            return
        if useq > self.highest_useq:
            self.highest_useq = useq
        self.send(
            first_byte,
            packet.marker | self.payload_type,
            (useq + self.seq_offset) & 0xFFFF,
            (packet.uts + self.ts_offset) & 0xFFFFFFFF,
            self.ssrc,
            body,
        )
        self.packets += 1
        self.octets += len(packet.payload)

    def _start(self, packet: UpPacket) -> None:
        self.waiting = False
        self.start_useq = packet.useq
        self.highest_useq = packet.useq - 1
        now = time.monotonic()
        self.seq_offset = (self._last_seq + 1 - packet.useq) & 0xFFFF
        elapsed = int((now - self._last_time) * self.up.clock_rate) if self._last_time else 0
        step = max(1, min(elapsed, 5 * self.up.clock_rate))
        self.ts_offset = (self._last_ts + step - packet.uts) & 0xFFFFFFFF

    def restart(self) -> None:
        """Wait for the next keyframe and continue numbering from where we are (used when
        the source changes)."""
        if not self.waiting and self.highest_useq >= 0:
            self._last_seq = (self.highest_useq + self.seq_offset) & 0xFFFF
            self._last_ts = (self.up.ts.highest + self.ts_offset) & 0xFFFFFFFF
            self._last_time = time.monotonic()
        self.waiting = True

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
            first_byte, body = self.up.body_for(self.writer, packet)
            self.send(
                first_byte,
                packet.marker | self.payload_type,
                (useq + self.seq_offset) & 0xFFFF,
                (packet.uts + self.ts_offset) & 0xFFFFFFFF,
                self.ssrc,
                body,
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
        self.estimate.on_remb(bitrate, time.monotonic())

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
        }
