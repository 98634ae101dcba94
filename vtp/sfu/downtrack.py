"""A down track: one outgoing (server -> subscriber) RTP stream fed by an up track.

Per packet (in C, :mod:`vtp.sfu.fastpath`) a fresh 12-byte header is written (this
subscriber's SSRC, payload type, sequence number and timestamp, each with a fixed offset
from the up track's continuous numbering: ``seq16 = fseq + seq_offset``) with this
subscriber's header extensions, then the payload; the result is protected and sent.
Video starts at a keyframe; offsets are chosen at (re)start so numbering continues from
whatever this subscriber last received.

Simulcast: a down track forwards exactly one encoding (layer) of its published track
(:attr:`DownTrack.track`, whose ``layers`` are the encodings) and may switch, or pause.
A switch (:meth:`DownTrack.switch_to`) waits for a keyframe of the target layer (asked
for with a PLI, coalesced and deferred by the up track) while the current layer keeps
flowing; at that keyframe's first packet the down track leaves the old layer's fan-out
and joins the new one with offsets that continue its sequence numbers, timestamps and
(VP8) picture ID / TL0PICIDX. Pausing (``switch_to(None)``) stops the video at once;
resuming is a switch.

Temporal layers (:mod:`vtp.sfu.temporal`): :attr:`DownTrack.max_temporal` caps the
temporal layers forwarded (the lower of the allocator's choice and the subscriber's
``fps`` preference); :attr:`DownTrack.temporal` is the level in force, changed by the up
track at pictures the subscriber can decode from. A (re)start or layer switch begins
uncapped and takes the cap at its keyframe (a switch) or the next picture (a start: the
keyframe's first packet is written before the down joins a fan-out)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vtp.sfu import fastpath, rtcp, temporal, vp8
from vtp.sfu.estimator import MAX_BITRATE, START_BITRATE, DownEstimate
from vtp.sfu.rtp import abs_send_time_now

EPOCHS = 4  # temporal levels remembered for NACKs (each lasts at least one picture)

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
    """Numbering (``start_fseq``, ``seq_offset``, ``ts_offset``, ``highest_fseq``) and
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
        self.up = up  # the layer (encoding) being forwarded
        self.track = up.primary  # the published track (stable across switches)
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
        # A single-layer publisher is asked for what its subscribers can take: no loss
        # seen yet is no reason to hold it back (1.5 Mbps, grown 8 % per receiver report,
        # held Chromium below 720p for its first 7-10 s). Simulcast layer choice starts
        # at START_BITRATE.
        self.estimate = DownEstimate(START_BITRATE if up.simulcast else MAX_BITRATE)
        self.on_failure: Callable[[], None] | None = None
        self.waiting = True
        # last written values, so a restart continues the numbering
        self._last_seq16 = random.getrandbits(16)
        self._last_ts = random.getrandbits(32)
        self._last_time = 0.0
        self.state.highest_fseq = -1
        # simulcast: the layer being switched to (None: none), paused (in no fan-out)
        self.target: UpTrack | None = None
        self.paused = False
        self.switches = 0
        self._vp8 = up.mime_type == "video/vp8"
        self._last_descriptor: vp8.Descriptor | None = None
        # subscriber preferences (vtp.sfu.allocation reads them); 0 = no limit
        self.max_width = 0
        self.max_height = 0
        self.visible = True
        self.pause_reason = ""  # why it was paused ("hidden", "bandwidth")
        self.wanted: UpTrack | None = None  # the layer it would take if it flowed
        self.max_fps = 0.0  # the subscriber's frame-rate preference (0: full rate)
        # temporal level in force, and the cap to move to (vtp.sfu.temporal)
        self.temporal = temporal.ALL
        self.max_temporal = temporal.ALL
        self.temporal_since = 0.0  # when the pending level change was asked for
        self.temporal_switches = 0
        # NACKs for packets sent at earlier levels: (first packet, level, seq_offset,
        # pid_offset) of each, oldest first; the current one began at _epoch_first
        self._epochs: list[tuple[int, int, int, int]] = []
        self._epoch_first = 0  # also: older packets are not resent
        # called after a switch completed or a pause began: (down, it was paused before)
        self.on_layer_change: Callable[[DownTrack, bool], None] | None = None
        # called when the subscriber's REMB falls (its layers are reallocated at once)
        self.on_congestion: Callable[[], None] | None = None
        self.retransmitted = 0
        self.nacks_received = 0
        self.plis_received = 0
        self.fraction_lost = 0
        self.packets_lost = 0
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
    def start_fseq(self) -> int:
        return int(self.state.start_fseq)

    @property
    def highest_fseq(self) -> int:
        return int(self.state.highest_fseq)

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
            packet.fseq,
            packet.uts & 0xFFFFFFFF,
            packet.audio_level,
            abs_send_time,
            packet.payload,
            len(packet.payload),
        )

    def _start(self, packet: UpPacket) -> None:
        self.temporal = temporal.ALL
        self._set_offsets(packet)
        self.waiting = False
        self.up.down_started(self)

    def _set_offsets(self, packet: UpPacket) -> None:
        """Offsets that make ``packet`` (of :attr:`up`) follow what was last sent."""
        state = self.state
        state.start_fseq = packet.fseq
        state.highest_fseq = packet.fseq - 1
        self._epoch_first = packet.fseq
        self._epochs = []
        state.seq_offset = (self._last_seq16 + 1 - packet.fseq) & 0xFFFF
        step = self._ts_step(packet)
        state.ts_offset = (self._last_ts + step - packet.uts) & 0xFFFFFFFF
        if self._vp8 and self._last_descriptor is not None:
            offsets = vp8.continuing_offsets(
                self._last_descriptor, vp8.parse_descriptor(packet.payload)
            )
            if offsets is not None:
                state.pid_offset, state.tl0_offset = offsets
                state.vp8_rewrite = 1

    def _ts_step(self, packet: UpPacket) -> int:
        """How far this packet's timestamp is past the last one sent: the wall-clock
        time since that one arrived, at least 1 tick, at most 5 s. (Mapping through the
        layers' sender reports was tried: its extrapolation errors made Chromium hold
        frames for ~250 ms after a switch, counted as a freeze.)"""
        clock = self.up.clock_rate
        step = int((time.monotonic() - self._last_time) * clock) if self._last_time else 0
        return max(1, min(step, 5 * clock))

    def _remember(self) -> None:
        """Keep where this subscriber's numbering stands, so the next start continues
        it (sequence number, timestamp, VP8 descriptor as the subscriber saw them)."""
        if self.waiting or self.highest_fseq < 0:
            return
        up = self.up
        state = self.state
        highest = self.highest_fseq
        last = up.cache.get(highest)
        uts = last.uts if last is not None else up.ts.highest
        level = up.temporal_level(self.temporal)
        skip = level.skip(highest) if level is not None else 0
        self._last_seq16 = (highest - skip + self.seq_offset) & 0xFFFF
        self._last_ts = (uts + self.ts_offset) & 0xFFFFFFFF
        self._last_time = up.last_arrival or time.monotonic()
        if self._vp8 and last is not None:
            descriptor = vp8.parse_descriptor(last.payload)
            pskip = level.picture_skip(last.uts) if level is not None else 0
            if descriptor is not None and (state.vp8_rewrite or pskip):
                pid_offset = (state.pid_offset - pskip) & 0xFFFF
                descriptor = vp8.shifted(descriptor, pid_offset, state.tl0_offset)
            self._last_descriptor = descriptor

    def restart(self) -> None:
        """Wait for the next keyframe and continue numbering from where we are (used when
        the source changes)."""
        self._remember()
        if not self.waiting:
            self._last_time = time.monotonic()
            self.waiting = True
            self.up.down_stopped(self)

    # --- simulcast: layer switches and pauses ---------------------------------------------

    @property
    def rid(self) -> str:
        return self.up.rid

    @property
    def current(self) -> UpTrack | None:
        """The layer this subscriber is forwarded (None while paused)."""
        return None if self.paused else self.up

    def switch_to(self, layer: UpTrack | None) -> None:
        """Forward ``layer`` (one of :attr:`track`'s layers) from its next keyframe, or
        pause at once (None). Repeated calls coalesce; the last target wins."""
        if self.closed:
            return
        if layer is None:
            self._cancel_switch()
            if not self.paused:
                self._remember()
                if not self.waiting:
                    self._last_time = time.monotonic()
                self.paused = True
                self.waiting = True
                self.up.remove_down(self)
                self._changed(False)
            return
        if layer is self.up and not self.paused:
            self._cancel_switch()  # staying (or back before the switch happened)
            return
        if layer is self.target:
            return
        self._cancel_switch()
        if self.waiting and not self.paused:
            # not started yet: wait on the new layer instead
            self.up.remove_down(self)
            self.up = layer
            layer.add_down(self)
            return
        self.target = layer
        layer.add_switching(self)

    def _cancel_switch(self) -> None:
        if self.target is not None:
            self.target.remove_switching(self)
            self.target = None

    def switched(self, layer: UpTrack, packet: UpPacket) -> None:
        """``layer``'s keyframe ``packet`` arrived (called by the layer before it fans the
        packet out): leave the old layer, join ``layer`` continuing the numbering."""
        if self.target is not layer or self.closed:
            return
        self.target = None
        was_paused = self.paused
        if not was_paused:
            self._remember()
            self.up.remove_down(self)
        self.paused = False
        self.pause_reason = ""
        self.up = layer
        self.temporal = temporal.ALL
        self._set_offsets(packet)
        self.waiting = False
        self.switches += 1
        layer.join_started(self)
        self._changed(was_paused)

    # --- temporal layers ----------------------------------------------------------------

    def set_max_temporal(self, level: int) -> None:
        """Forward temporal layers up to ``level`` (:data:`temporal.ALL`: every one),
        from a picture the subscriber can decode from on (the up track decides)."""
        if level == self.max_temporal:
            return
        self.max_temporal = level
        if not self.waiting and not self.paused and not self.closed:
            self.up.temporal_target_changed(self)

    def temporal_moved(self, level: int, packet: UpPacket) -> None:
        """Called by the up track at ``packet`` (the first of a picture, not sent yet):
        from it on this down is at ``level``. Offsets change by the difference of the
        two levels' skips there, so sequence numbers and picture IDs continue."""
        up = self.up
        old = self.temporal
        a, b = up.temporal_level(old), up.temporal_level(level)
        fseq, uts = packet.fseq, packet.uts
        seq_delta = (b.skip(fseq) if b else 0) - (a.skip(fseq) if a else 0)
        pid_delta = (b.picture_skip(uts) if b else 0) - (a.picture_skip(uts) if a else 0)
        state = self.state
        epoch = (self._epoch_first, old, int(state.seq_offset), int(state.pid_offset))
        self._epochs = [*self._epochs[-(EPOCHS - 1) :], epoch]
        self._epoch_first = fseq
        state.seq_offset = (state.seq_offset + seq_delta) & 0xFFFF
        if self._vp8:
            state.pid_offset = (state.pid_offset + pid_delta) & 0xFFFF
            state.vp8_rewrite = 1
        # late packets from before the change would be numbered by the new level: they
        # are left to the subscriber's NACKs, answered through _epochs
        state.start_fseq = max(int(state.start_fseq), fseq)
        self.temporal = level
        self.temporal_switches += 1
        up.regroup(self, old, level)

    def _changed(self, was_paused: bool) -> None:
        if self.on_layer_change is not None:
            self.on_layer_change(self, was_paused)

    # --- RTCP from the subscriber ---------------------------------------------------------

    def on_nack(self, lost: tuple[int, ...]) -> None:
        """Answer from the up track's cache; what it lacks is asked of the publisher.
        ``lost``: the ``seq16`` numbers the subscriber misses. A down at a temporal level
        numbers packets without those the level drops (``g = fseq - skip``): map back
        through the level (and the level before the last change)."""
        if self.waiting:
            return
        self.nacks_received += len(lost)
        up = self.up
        cache = up.cache
        state = self.state
        seq_offset = int(state.seq_offset)
        pid_offset = int(state.pid_offset)
        level = up.temporal_level(self.temporal)
        highest = self.highest_fseq
        g_high = highest - (level.skip(highest) if level is not None else 0)
        highest_out = (g_high + seq_offset) & 0xFFFF
        for seq16 in lost:
            g = g_high - ((highest_out - seq16) & 0xFFFF)
            fseq = level.fseq_of(g) if level is not None else g
            then, then_pid_offset = level, pid_offset
            end = self._epoch_first
            if fseq < end:
                # sent at an earlier level: number it as that level did
                for first, old, old_seq_offset, old_pid_offset in reversed(self._epochs):
                    then = up.temporal_level(old)
                    g_first = first - (then.skip(first) if then is not None else 0)
                    delta = (seq16 - g_first - old_seq_offset) & 0xFFFF
                    g = g_first + (delta - 0x10000 if delta >= 0x8000 else delta)
                    fseq = then.fseq_of(g) if then is not None else g
                    if first <= fseq < end:
                        then_pid_offset = old_pid_offset
                        break
                    end = first
                else:
                    continue  # before this start, or epochs forgotten
            packet = cache.get(fseq)
            if packet is None:
                up.nack_upstream(fseq)
                continue
            pskip = then.picture_skip(packet.uts) if then is not None else 0
            fastpath.send_skip(
                state,
                packet.marker,
                fseq,
                fseq + seq_offset - seq16,  # (the C side adds seq_offset back: seq16)
                packet.uts & 0xFFFFFFFF,
                packet.audio_level,
                abs_send_time_now(),
                packet.payload,
                len(packet.payload),
                (pskip + pid_offset - then_pid_offset) & 0xFFFF,
            )
            self.retransmitted += 1

    def on_keyframe_request(self) -> None:
        self.plis_received += 1
        # switching: the target's keyframe serves the request (and is the switch); a
        # keyframe of the layer being left would only add to a congested link
        (self.target or self.up).request_keyframe()

    def on_report(self, block: rtcp.ReportBlock) -> None:
        self.fraction_lost = block.fraction_lost
        self.packets_lost = block.packets_lost
        lossy = self.estimate.on_loss(block.fraction_lost / 256, time.monotonic())
        if lossy and self.on_congestion is not None:
            self.on_congestion()

    def on_remb(self, bitrate: int) -> None:
        now = time.monotonic()
        octets = self.octets
        elapsed = now - self._rate_time
        if elapsed >= 0.3:  # the payload rate sent, between REMBs (what one compares with)
            if self._rate_time:
                self._sent_bps = (octets - self._rate_octets) * 8 / elapsed
            self._rate_time, self._rate_octets = now, octets
        if self.estimate.on_remb(bitrate, now, self._sent_bps) and self.on_congestion is not None:
            self.on_congestion()

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
            self._cancel_switch()
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
            "rid": self.up.rid if self.up.rid and not self.paused else None,
            "paused": self.paused,
            "switches": self.switches,
            "temporal": self.temporal if self.temporal < temporal.ALL else None,
            "temporal_switches": self.temporal_switches,
            "send_errors": sender.send_errors if sender is not None else 0,
        }
