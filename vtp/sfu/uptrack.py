"""An up track: one incoming (publisher -> server) RTP stream and its fan-out.

:meth:`UpTrack.receive` is the per-packet path: validate, make sequence numbers and
timestamps continuous (the publisher's ``seq16`` unwrapped to ``pseq``, then numbered
``fseq`` by the track's :class:`~vtp.sfu.seqmap.SeqMap`), cache for NACKs, then hand the
packet to every down track (one call into the compiled fan-out, :mod:`vtp.sfu.fastpath`)
and in-process tap. A muted track (:meth:`UpTrack.set_muted`: the server enforces a
teacher's mute) withholds its packets from both. Everything else here (NACKs to the
publisher, keyframe requests, receiver reports, REMB values) runs from the SFU's
periodic tick.

Simulcast: each encoding (layer, one rid and SSRC) of a published video is an UpTrack
of its own with the whole per-packet path above; the first one is the published track's
*primary* (its id, taps and ``layers``, lowest first once their keyframes told their
sizes). Down tracks move between layers (:mod:`vtp.sfu.downtrack`): a layer's
``_switching`` down tracks join it at its next keyframe, before the packet fans out.

Temporal layers (VP8 with TIDs, :mod:`vtp.sfu.temporal`): down tracks capped at a
temporal level sit in that level's fan-out array instead of the uncapped one; while any
does (or is changing level), each packet goes to every level it belongs to, one C call
per level with that level's numbering.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from vtp.sfu import allocation, fastpath, rtcp, temporal, vp8
from vtp.sfu.codecs import keyframe_detector
from vtp.sfu.estimator import MAX_BITRATE, MIN_BITRATE, RateMeter, combine
from vtp.sfu.packetcache import PacketCache
from vtp.sfu.rtp import ParsedRtp, abs_send_time_now
from vtp.sfu.seqmap import SeqMap, Unwrapper
from vtp.sfu.speaker import LevelMeter

if TYPE_CHECKING:
    from vtp.sfu.downtrack import DownTrack

logger = logging.getLogger(__name__)

KEYFRAME_INTERVAL_S = 1.0  # at most one PLI per publisher track per second
KEYFRAME_GIVE_UP_S = 10.0  # stop repeating an unanswered request after this
NACK_MAX_GAP = 200  # larger gaps are not worth asking for
NACK_MAX_AGE_S = 1.0
NACK_RETRY_S = 0.05
NACK_MAX_TRIES = 3
MAX_MISSING = 512
ACTIVE_WITHIN_S = 1.5  # a layer with no packet for this long has stopped


class UpPacket:
    """A validated packet in the up track's continuous numbering. Taps receive these.

    ``fseq``/``uts``: the forwarded sequence number and the unwrapped timestamp, both
    unbounded and continuous (packets that were not forwarded - padding, invalid - are
    skipped, so ``fseq`` has no holes);
    ``payload``: the codec payload (VP8/VP9 descriptor included); ``keyframe``: a packet
    a decoder can start from (:func:`vtp.sfu.codecs.keyframe_detector`);
    ``audio_level``: RFC 6464 byte or -1."""

    __slots__ = ("audio_level", "fseq", "keyframe", "marker", "payload", "uts")

    def __init__(
        self, fseq: int, uts: int, marker: int, payload: bytes, audio_level: int, keyframe: bool
    ) -> None:
        self.fseq = fseq
        self.uts = uts
        self.marker = marker
        self.payload = payload
        self.audio_level = audio_level
        self.keyframe = keyframe


TapCallback = Callable[["UpTrack", UpPacket], None]
TAP_FOLLOWS = ("video/vp8", "video/vp9")  # codecs whose taps follow the best layer


class Tap:
    """An in-process consumer of one published track (e.g. the recorder).

    On a simulcast VP8/VP9 video it reads the best layer that flows: it moves up at a
    keyframe of a higher layer, and down at a keyframe of a lower one when its own
    stops (:meth:`UpTrack._take_taps`); like a down track for a subscriber, it hands
    its consumer one continuous numbering and timeline across the moves."""

    def __init__(self, track: UpTrack, callback: TapCallback) -> None:
        self.track = track  # the layer it reads now
        self.callback = callback
        self.closed = False
        self._seq_offset = 0
        self._ts_offset = 0
        self._last: UpPacket | None = None

    def deliver(self, up: UpTrack, packet: UpPacket) -> None:
        if self._seq_offset or self._ts_offset:
            packet = UpPacket(
                packet.fseq + self._seq_offset,
                packet.uts + self._ts_offset,
                packet.marker,
                packet.payload,
                packet.audio_level,
                packet.keyframe,
            )
        self._last = packet
        self.callback(up, packet)

    def moved_to(self, layer: UpTrack, first: UpPacket) -> None:
        """Read ``layer`` from ``first`` (the start of its keyframe) on, numbered and
        timed right after the last packet delivered (one frame interval later)."""
        last = self._last
        if last is not None:
            self._seq_offset = last.fseq + 1 - first.fseq
            self._ts_offset = last.uts + layer.clock_rate // 30 - first.uts
        self.track = layer

    @property
    def kind(self) -> str:
        return self.track.kind

    @property
    def clock_rate(self) -> int:
        return self.track.clock_rate

    @property
    def codec(self) -> str:
        return self.track.mime_type

    def request_keyframe(self) -> None:
        self.track.request_keyframe()

    def sender_report(self) -> tuple[int, int] | None:
        """The publisher's last (NTP time, unwrapped RTP timestamp) pair, for A/V sync."""
        return self.track.last_sr

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.track.remove_tap(self)


class UpTrack:
    def __init__(
        self,
        track_id: str,
        kind: str,
        mime_type: str,
        clock_rate: int,
        payload_type: int,
        mid: str,
        ssrc: int | None,
        send_rtcp: Callable[[bytes], int],
        rtcp_ssrc: int,
        rid: str = "",
    ) -> None:
        self.id = track_id
        self.rid = rid
        # simulcast: the published track this layer belongs to, and (on the primary)
        # all its layers in the publisher's order; see ordered_layers()
        self.primary: UpTrack = self
        self.layers: list[UpTrack] = [self]
        self.width = 0  # from the last keyframe (VP8), 0 if unknown
        self.height = 0
        self.last_arrival = 0.0
        self.active_since = 0.0
        self._switching: list[DownTrack] = []
        self._order: tuple[tuple[int, ...], list[UpTrack]] | None = None
        self._vp8 = mime_type == "video/vp8"
        self.kind = kind
        self.video = kind == "video"
        # a VP8 payload is at least its descriptor byte plus one byte of frame data
        self._min_payload = 2 if self.video else 1
        self.mime_type = mime_type
        self._keyframe_start = keyframe_detector(mime_type)
        self.clock_rate = clock_rate
        self.payload_type = payload_type
        self.mid = mid
        self.ssrc = ssrc
        self._send_rtcp = send_rtcp
        self._rtcp_ssrc = rtcp_ssrc
        self.downs: list[DownTrack] = []
        # the fan-out: started down tracks (C array) and those waiting for a keyframe
        self._started = fastpath.DownList()
        self._waiting: list[DownTrack] = []
        # temporal layers (VP8): levels 0..2 once a packet carried a TID; the downs whose
        # level is to change; whether any down uses a level (the per-packet switch)
        self._levels: list[temporal.Level] | None = None
        self._tswitch: list[DownTrack] = []
        self._levels_used = False
        self._tnewest = -1
        self.max_tid = -1  # highest TID seen (-1: no temporal layers)
        self._tid_bytes = [0, 0, 0, 0]  # since the last rate tick, per TID
        self._tid_frames = [0, 0, 0, 0]
        self._tid_since = 0.0
        # per level 0..2: share of the layer's bitrate, and frames per second
        self.level_share: tuple[float, ...] = temporal.DEFAULT_SHARE
        self.level_fps: tuple[float, ...] = ()
        self.taps: list[Tap] = []
        self.cache: PacketCache[UpPacket] = PacketCache(1024 if self.video else 256)
        # seq16 -> pseq (the publisher's numbering), pseq -> fseq (the forwarded one)
        self.pseqs = Unwrapper(16, max_forward=3000, max_back=1000)
        self.fseqs = SeqMap()
        frame = clock_rate // 30 if self.video else clock_rate // 50
        self.ts = Unwrapper(32, max_forward=30 * clock_rate, max_back=5 * clock_rate, step=frame)
        self.level = LevelMeter()
        self.rate = RateMeter()
        # counters
        self.packets = 0
        self.bytes = 0
        self.dropped = 0
        self.duplicates = 0
        self.forwarded = 0
        self.nacks_sent = 0
        self.nacks_answered = 0
        self.plis_sent = 0
        self.keyframes = 0
        self.withheld = 0  # packets not forwarded because the track was muted
        # server-side mute: while True (muted, or unmuted video waiting for a keyframe)
        # every packet goes through _withhold(); the packet path pays one flag check
        self.muted = False
        self._withholding = False
        self._base_pseq: int | None = None
        self._expected_prior = 0
        self._last_transit: float | None = None
        self.jitter = 0.0
        self._received_prior = 0
        # NACK state: pseq -> [first noticed, last asked, tries]
        self.missing: dict[int, list[float]] = {}
        # keyframe requests
        self._kf_pending = False
        self._kf_requested_at = 0.0
        self._last_pli = -KEYFRAME_INTERVAL_S
        # sender report mapping (ntp, uts) and arrival (for LSR/DLSR)
        self.last_sr: tuple[int, int] | None = None
        self._last_sr_arrival = 0.0
        self.closed = False

    # --- the packet path -------------------------------------------------------------

    def receive(self, p: ParsedRtp) -> None:
        """Handle one packet of this track (payload type already checked)."""
        if len(p.payload) < self._min_payload:
            self.discard(p)  # padding-only, or too short to be this codec
            return
        if self._withholding and self._withhold(p):
            return
        pseq = self._arrived(p.seq16)
        if pseq is None:
            return
        fseq = self.fseqs.forward(pseq)
        payload = p.payload
        uts = self.ts.map(p.ts)
        # interarrival jitter (RFC 3550 A.8), in timestamp units
        now = time.monotonic()
        if now - self.last_arrival > ACTIVE_WITHIN_S:
            self.active_since = now  # (re)started: its rate is not known yet
        self.last_arrival = now
        transit = now * self.clock_rate - uts
        if self._last_transit is not None:
            d = abs(transit - self._last_transit)
            self.jitter += (d - self.jitter) / 16
        self._last_transit = transit
        keyframe = self.video and self._keyframe_start(payload)
        if keyframe:
            self.keyframes += 1
            self._kf_pending = False
            if self._vp8:
                dimensions = vp8.keyframe_size(payload)
                if dimensions is not None:
                    self.width, self.height = dimensions
        info = vp8.temporal_info(payload) if self._vp8 else -1
        if info >= 0:
            tid = info & 3
            self._tid_bytes[tid] += len(payload)
            if info & vp8.PICTURE_START:
                self._tid_frames[tid] += 1
            if tid > self.max_tid:
                self._new_tid(tid)
        packet = UpPacket(fseq, uts, p.marker, payload, p.audio_level, keyframe)
        self.cache.add(packet)
        self.packets += 1
        size = len(payload)
        self.bytes += size
        self.rate.add(size)
        if p.audio_level >= 0:
            self.level.add(p.audio_level)
        if keyframe and self._switching:
            self._switch_here(packet)
        if keyframe and len(self.primary.layers) > 1:
            self._take_taps(packet, now)
        if self.downs:
            if self._levels_used:
                self._forward_levels(packet, info)
            else:
                self.forward(packet)
        if self.taps:
            for tap in self.taps:
                try:
                    tap.deliver(self, packet)
                except Exception:
                    logger.exception("tap on track %s failed; removing it", self.id)
                    tap.close()

    def _arrived(self, seq16: int) -> int | None:
        """Unwrap a sequence number (its ``pseq``) and do the loss/NACK bookkeeping;
        None for a duplicate."""
        pseqs = self.pseqs
        before = pseqs.highest
        rebases = pseqs.rebases
        pseq = pseqs.map(seq16)
        if pseqs.rebases != rebases:
            # the publisher's numbering jumped (reset or hostile): what was missing under
            # the old numbering will never come; skip it so subscribers see no hole
            self.fseqs.never_coming(self.missing)
            self.missing.clear()
            return pseq
        if self._base_pseq is None:
            self._base_pseq = pseq
        elif pseq <= before:
            if self._seen(pseq):
                self.duplicates += 1
                return None
            if self.missing.pop(pseq, None) is not None:
                self.nacks_answered += 1
        elif pseq > before + 1:
            gap = pseq - before - 1
            if 0 < gap <= NACK_MAX_GAP and len(self.missing) < MAX_MISSING:
                now = time.monotonic()
                for missing in range(before + 1, pseq):
                    self.missing[missing] = [now, 0.0, 0]
        return pseq

    def _seen(self, pseq: int) -> bool:
        """``pseq`` was dropped, or forwarded and still cached."""
        fseq = self.fseqs.fseq(pseq)
        return fseq is None or self.cache.get(fseq) is not None

    def discard(self, p: ParsedRtp) -> None:
        """A packet that is not forwarded (padding-only, malformed payload, payload type
        not negotiated): its sequence number is taken out of the forwarded numbering, so
        subscribers see no gap, and it is not NACKed."""
        self.dropped += 1
        self._skip(p.seq16)

    def _skip(self, seq16: int) -> None:
        pseq = self._arrived(seq16)
        if pseq is not None:
            # (a late one below what was forwarded cannot be skipped: numbers already
            # given out stay put; subscribers see the hole as a loss)
            self.fseqs.drop(pseq, self.pseqs.highest)

    # --- server-side mute ------------------------------------------------------------------

    def set_muted(self, muted: bool) -> None:
        """Withhold (True) or forward again (False) this track's packets, from subscribers
        and taps (the recorder) alike: what a teacher muted is not recorded either. Withheld
        packets are skipped in the forwarded numbering like discarded ones, so subscribers
        see no loss and NACK nothing. Unmuted video resumes at a keyframe (asked for at
        once): no subscriber or recording gets a frame that refers to one it never saw.
        On a simulcast track's primary it applies to every layer."""
        for layer in self.layers:
            if muted != layer.muted:
                layer.muted = muted
                layer._withholding = muted or layer.video
                if not muted and layer.video:
                    layer.request_keyframe()

    def _withhold(self, p: ParsedRtp) -> bool:
        """True if the packet is withheld (muted, or video not yet at a keyframe)."""
        if not self.muted:
            if self._keyframe_start(p.payload):
                self._withholding = False
                return False
            if not self._kf_pending:  # (a request gives up after a while: renew it)
                self.request_keyframe()
        self.withheld += 1
        self._skip(p.seq16)
        return True

    def forward(self, packet: UpPacket) -> None:
        """Write one packet to every down track: the started ones in one C call, those
        waiting for a keyframe from Python."""
        abs_send_time = abs_send_time_now()
        started = self._started
        if started.count:
            payload = packet.payload
            fastpath.fanout(
                started.array,
                started.count,
                packet.marker,
                packet.fseq,
                packet.uts & 0xFFFFFFFF,
                packet.audio_level,
                abs_send_time,
                payload,
                len(payload),
            )
            self.forwarded += started.count
        for down in self._waiting:  # (a started one moves: the list is replaced, not changed)
            try:
                down.write(packet, abs_send_time)
            except Exception:  # one subscriber's failure must not stop the others
                self._failed(down)

    def _forward_levels(self, packet: UpPacket, info: int) -> None:
        """:meth:`forward` while some down is capped at a temporal level: each level
        drops what is above it and numbers the rest without the gaps; the downs of
        each level get the packet in one C call."""
        abs_send_time = abs_send_time_now()
        fseq = packet.fseq
        uts = packet.uts
        tid = info & 3 if info >= 0 else 0
        if fseq > self._tnewest:
            self._tnewest = fseq
            if self._tswitch and (packet.keyframe or (info >= 0 and info & vp8.PICTURE_START)):
                self._temporal_switches(tid, info, packet)
        payload = packet.payload
        size = len(payload)
        ts32 = uts & 0xFFFFFFFF
        marker = packet.marker
        for level in self._levels or ():
            if tid > level.index:
                level.drop(fseq, uts)
                continue
            if fseq > level.highest_kept:
                level.highest_kept = fseq
            if uts > level.highest_kept_ts:
                level.highest_kept_ts = uts
            downs = level.downs
            if downs.count:
                fastpath.fanout_skip(
                    downs.array,
                    downs.count,
                    marker,
                    fseq,
                    level.skip(fseq),
                    ts32,
                    -1,
                    abs_send_time,
                    payload,
                    size,
                    level.picture_skip(uts) & 0xFFFF,
                )
                self.forwarded += downs.count
        started = self._started
        if started.count:
            fastpath.fanout(
                started.array,
                started.count,
                marker,
                fseq,
                ts32,
                -1,
                abs_send_time,
                payload,
                size,
            )
            self.forwarded += started.count
        for down in self._waiting:
            try:
                down.write(packet, abs_send_time)
            except Exception:
                self._failed(down)

    def _temporal_switches(self, tid: int, info: int, packet: UpPacket) -> None:
        """At the first packet of a picture: downs whose level is to change move, down at
        once, up one step at a layer-sync picture of the next layer, or at a keyframe
        to their target (see :mod:`vtp.sfu.temporal`)."""
        sync = info >= 0 and bool(info & vp8.TEMPORAL_SYNC)
        keep: list[DownTrack] = []
        changed = False
        for down in self._tswitch:
            current = down.temporal
            target = down.max_temporal
            if packet.keyframe or target < current or current >= self.max_tid:
                new = target
            elif sync and tid == current + 1:
                new = target if tid >= self.max_tid else tid
            else:
                new = current
            if new != current:
                try:
                    down.temporal_moved(new, packet)
                except Exception:
                    self._failed(down)
                    continue
                changed = True
            if down.temporal != down.max_temporal:
                keep.append(down)
        self._tswitch = keep
        if changed or not keep:
            self._update_levels_used()

    def _new_tid(self, tid: int) -> None:
        """The first packet with a TID (or a higher one than seen): the track has
        temporal layers; started downs capped below them start moving to their level."""
        self.max_tid = tid
        if self._levels is None:
            self._levels = [temporal.Level(i) for i in range(temporal.LEVELS)]
            for down in self.downs:
                if down.up is self and not down.waiting:
                    self.temporal_target_changed(down)

    def temporal_level(self, index: int) -> temporal.Level | None:
        """The temporal level ``index`` (None: :data:`temporal.ALL`, or no layers)."""
        if self._levels is None or index >= temporal.ALL:
            return None
        return self._levels[index]

    def _group(self, down: DownTrack) -> fastpath.DownList:
        level = self.temporal_level(down.temporal)
        return self._started if level is None else level.downs

    def _ungroup(self, down: DownTrack) -> None:
        self._started.remove(down)
        for level in self._levels or ():
            level.downs.remove(down)

    def _update_levels_used(self) -> None:
        self._levels_used = bool(self._tswitch) or any(
            level.downs.count for level in self._levels or ()
        )

    def temporal_target_changed(self, down: DownTrack) -> None:
        """``down`` (started on this layer) has a new :attr:`DownTrack.max_temporal`:
        its level changes at a picture where the subscriber can follow."""
        if self._levels is None:
            return
        pending = down in self._tswitch
        if down.max_temporal != down.temporal and not pending:
            down.temporal_since = time.monotonic()
            self._tswitch = [*self._tswitch, down]
        elif down.max_temporal == down.temporal and pending:
            self._tswitch = [d for d in self._tswitch if d is not down]
        self._update_levels_used()

    def regroup(self, down: DownTrack, old: int, new: int) -> None:
        """``down`` moved from temporal level ``old`` to ``new`` (numbering already set)."""
        old_level = self.temporal_level(old)
        (self._started if old_level is None else old_level.downs).remove(down)
        new_level = self.temporal_level(new)
        (self._started if new_level is None else new_level.downs).add(down, down.state)

    def _switch_here(self, packet: UpPacket) -> None:
        """Down tracks switching to this layer join it at this keyframe."""
        switching = self._switching
        self._switching = []
        for down in switching:
            try:
                down.switched(self, packet)
            except Exception:  # one subscriber's failure must not stop the others
                self._failed(down)

    def _failed(self, down: DownTrack) -> None:
        logger.exception("down track %s of %s failed; detaching it", down.ssrc, self.id)
        down.fail()

    # --- fan-out membership -------------------------------------------------------------

    def add_down(self, down: DownTrack) -> None:
        if down not in self.downs:
            self.downs = [*self.downs, down]
            if down.waiting:
                self._waiting = [*self._waiting, down]
            else:
                self._group(down).add(down, down.state)
        self.request_keyframe()

    def remove_down(self, down: DownTrack) -> None:
        if down in self.downs:
            self.downs = [d for d in self.downs if d is not down]
            self._waiting = [d for d in self._waiting if d is not down]
            self._ungroup(down)
            if down in self._tswitch:
                self._tswitch = [d for d in self._tswitch if d is not down]
            self._update_levels_used()

    def down_started(self, down: DownTrack) -> None:
        """``down`` got its first packet: from now on the C fan-out writes to it."""
        self._waiting = [d for d in self._waiting if d is not down]
        self._group(down).add(down, down.state)
        self.temporal_target_changed(down)

    def down_stopped(self, down: DownTrack) -> None:
        """``down`` waits for a keyframe again."""
        self._ungroup(down)
        if down in self._tswitch:
            self._tswitch = [d for d in self._tswitch if d is not down]
        self._update_levels_used()
        if down in self.downs and down not in self._waiting:
            self._waiting = [*self._waiting, down]

    def join_started(self, down: DownTrack) -> None:
        """``down`` switched to this layer: into the C fan-out at once."""
        if down not in self.downs:
            self.downs = [*self.downs, down]
        self._waiting = [d for d in self._waiting if d is not down]
        self._group(down).add(down, down.state)
        self.temporal_target_changed(down)

    def add_switching(self, down: DownTrack) -> None:
        """``down`` moves to this layer at its next keyframe (asked for now)."""
        if down not in self._switching:
            self._switching = [*self._switching, down]
        self.request_keyframe()

    def remove_switching(self, down: DownTrack) -> None:
        self._switching = [d for d in self._switching if d is not down]

    # --- simulcast layers (on the primary) ------------------------------------------------

    @property
    def simulcast(self) -> bool:
        return len(self.primary.layers) > 1

    def add_layer(self, layer: UpTrack) -> None:
        layer.primary = self
        self.layers = [*self.layers, layer]

    def ordered_layers(self) -> list[UpTrack]:
        """The layers lowest first: by keyframe size once every layer has sent one, else
        in the publisher's order (Chromium's ``sendEncodings`` q, h, f). Cached until
        a keyframe brings a new size (allocation asks for it per subscriber)."""
        primary = self.primary
        sizes = tuple(layer.width * layer.height for layer in primary.layers)
        cached = primary._order
        if cached is not None and cached[0] == sizes:
            return cached[1]
        layers = list(primary.layers)
        if all(sizes):
            layers.sort(key=lambda layer: layer.width * layer.height)
        primary._order = (sizes, layers)
        return layers

    def active(self, now: float, within: float = ACTIVE_WITHIN_S) -> bool:
        """A packet arrived in the last ``within`` seconds."""
        return self.last_arrival > 0 and now - self.last_arrival < within

    def add_tap(self, callback: TapCallback) -> Tap:
        tap = Tap(self, callback)
        self.taps = [*self.taps, tap]
        self.request_keyframe()
        return tap

    def remove_tap(self, tap: Tap) -> None:
        self.taps = [t for t in self.taps if t is not tap]

    def _take_taps(self, keyframe: UpPacket, now: float) -> None:
        """At this layer's keyframe, take the published track's taps if this layer is
        above the one they read, or that one stopped (dynacast, the publisher's
        bandwidth). VP8/VP9 only: their keyframes carry the new size, where an H.264
        file keeps the parameter sets it started with."""
        if self.mime_type not in TAP_FOLLOWS:
            return
        holder = next((layer for layer in self.primary.layers if layer.taps), None)
        if holder is None or holder is self:
            return
        layers = self.ordered_layers()
        if layers.index(self) < layers.index(holder) and holder.active(now):
            return
        taps, holder.taps = holder.taps, []
        for tap in taps:
            tap.moved_to(self, keyframe)
        self.taps = [*self.taps, *taps]

    def _better_layer_for_taps(self, now: float) -> None:
        """Ask for the keyframe that lets the taps on this layer move to the best layer
        flowing (coalesced like every keyframe request)."""
        layers = self.ordered_layers()
        best = next((layer for layer in reversed(layers) if layer.active(now)), None)
        if (
            best is not None
            and best is not self
            and (layers.index(best) > layers.index(self) or not self.active(now))
        ):
            best.request_keyframe()

    # --- RTCP towards the publisher -------------------------------------------------------

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe: coalesced, at most one PLI per second,
        deferred (not dropped) when asked too soon."""
        if not self.video or self.closed:
            return
        if not self._kf_pending:
            self._kf_pending = True
            self._kf_requested_at = time.monotonic()
        self._maybe_send_pli(time.monotonic())

    def _maybe_send_pli(self, now: float) -> None:
        """A pending request is repeated (at most once per second) until a keyframe
        arrives: publishers ignore PLIs that come too soon after the previous one."""
        if not self._kf_pending or self.ssrc is None:
            return
        if now - self._kf_requested_at > KEYFRAME_GIVE_UP_S:
            self._kf_pending = False
            return
        if now - self._last_pli >= KEYFRAME_INTERVAL_S:
            self._last_pli = now
            self.plis_sent += 1
            self._send_rtcp(rtcp.build_pli(self._rtcp_ssrc, self.ssrc))

    def nack_upstream(self, fseq: int) -> None:
        """A subscriber lost a packet the cache no longer (or never) had: ask for it."""
        pseq = self.fseqs.pseq(fseq)
        if (
            pseq not in self.missing
            and pseq > self.pseqs.highest - 1000
            and len(self.missing) < MAX_MISSING
        ):
            self.missing[pseq] = [time.monotonic(), 0.0, 0]

    def tick(self, now: float) -> None:
        """Periodic work: deferred PLI, NACKs for our own gaps."""
        self.rate.tick(now)
        if self.taps and len(self.primary.layers) > 1 and self.mime_type in TAP_FOLLOWS:
            self._better_layer_for_taps(now)
        if self.max_tid >= 0:
            self._temporal_tick(now)
        self._maybe_send_pli(now)
        if self.missing and self.ssrc is not None:
            ask: list[int] = []
            for pseq, state in list(self.missing.items()):
                first, last, tries = state
                if now - first > NACK_MAX_AGE_S or tries >= NACK_MAX_TRIES:
                    del self.missing[pseq]
                elif now - last >= NACK_RETRY_S:
                    state[1] = now
                    state[2] = tries + 1
                    ask.append(self.pseqs.to_wire(pseq))
            if ask:
                self.nacks_sent += len(ask)
                self._send_rtcp(rtcp.build_nack(self._rtcp_ssrc, self.ssrc, ask))

    def _temporal_tick(self, now: float) -> None:
        """Every MEASURE_S: each level's share of the bitrate and frame rate (what the
        allocator and ``fps`` preferences go by); a down waiting too long for a
        layer-sync picture to go up gets a keyframe instead."""
        elapsed = now - self._tid_since
        if not self._tid_since:
            self._tid_since = now  # (counting since the first TID)
        elif elapsed >= temporal.MEASURE_S:
            total = sum(self._tid_bytes)
            if total:
                cumulative = 0
                shares = []
                for b in self._tid_bytes[: temporal.LEVELS]:
                    cumulative += b
                    shares.append(cumulative / total)
                self.level_share = tuple(shares)
            frames = 0
            fps = []
            for f in self._tid_frames[: temporal.LEVELS]:
                frames += f
                fps.append(frames / elapsed)
            self.level_fps = tuple(fps)
            self._tid_since = now
            self._tid_bytes = [0, 0, 0, 0]
            self._tid_frames = [0, 0, 0, 0]
        for down in self._tswitch:
            if (
                down.max_temporal > down.temporal
                and now - down.temporal_since > temporal.UP_SWITCH_KEYFRAME_S
            ):
                down.temporal_since = now
                self.request_keyframe()

    def on_sender_report(self, ntp: int, rtp_ts: int) -> None:
        """The publisher's SR: keep the NTP/RTP pair and rewrite it for each subscriber."""
        highest = self.ts.highest
        delta = (rtp_ts - self.ts.to_wire(highest)) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 0x100000000
        uts = highest + delta
        self.last_sr = (ntp, uts)
        self._last_sr_arrival = time.monotonic()
        for down in self.downs:
            down.send_sender_report(ntp, uts)

    def report_block(self, now: float) -> rtcp.ReportBlock | None:
        """Our receiver report about this track (RFC 3550 A.3)."""
        if self.ssrc is None or self._base_pseq is None:
            return None
        highest = self.pseqs.highest
        expected = highest - self._base_pseq + 1
        received = self.packets + self.withheld  # (withheld packets did arrive)
        lost = max(0, expected - received)
        expected_interval = expected - self._expected_prior
        received_interval = received - self._received_prior
        self._expected_prior = expected
        self._received_prior = received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        lsr = dlsr = 0
        if self.last_sr is not None:
            lsr = (self.last_sr[0] >> 16) & 0xFFFFFFFF
            dlsr = int((now - self._last_sr_arrival) * 65536)
        extended = ((highest & 0xFFFF0000) | self.pseqs.to_wire(highest)) & 0xFFFFFFFF
        jitter = int(min(self.jitter, 0xFFFFFFFF))
        return rtcp.ReportBlock(self.ssrc, fraction, lost, extended, jitter, lsr, dlsr)

    def bitrate_for_publisher(self, now: float) -> int:
        """The REMB value for this track. One layer: what its subscribers can take (the
        weakest sets the pace). Simulcast: what the layers someone needs require - all
        the publisher wants when the top layer is needed (or no one is subscribed yet),
        else the layers up to the highest needed one, with room to grow."""
        if not self.simulcast:
            # (probing: a REMB caps only while it falls - see vtp.sfu.estimator)
            estimates = [d.estimate.value(now, probing=True) for d in self.downs]
            return combine(estimates, default=MAX_BITRATE)
        layers = self.ordered_layers()
        wanted = self.wanted_layers()
        needed = [
            i
            for i, layer in enumerate(layers)
            if layer.downs or layer._switching or layer in wanted
        ]
        if any(layer.taps for layer in layers):
            needed.append(0)  # a tap (the recorder) reads at least the lowest
        if not needed or max(needed) == len(layers) - 1:
            return MAX_BITRATE
        top = max(needed)
        total = sum(
            max(allocation.cost(layer, i, now), allocation.NOMINAL_BPS[min(i, 3)])
            for i, layer in enumerate(layers[: top + 1])
        )
        return max(MIN_BITRATE, min(MAX_BITRATE, int(total * 1.2)))

    def needed_layers(self) -> tuple[str, ...]:
        """Dynacast (on the primary): rids of the layers some subscriber is forwarded,
        waits for or switches to (both ends of a switch), lowest first; the lowest too
        when a tap (the recorder) reads the track: it reads the best layer that flows,
        and at least that one."""
        wanted = self.wanted_layers()
        layers = self.ordered_layers()
        tapped = any(layer.taps for layer in layers)
        needed = []
        for layer in layers:
            if (
                layer.downs
                or layer._switching
                or layer in wanted
                or (tapped and layer is layers[0])
            ):
                needed.append(layer.rid)
        return tuple(needed)

    def wanted_layers(self) -> list[UpTrack]:
        """Layers subscribers would take if they flowed (allocation's ``wanted``)."""
        return [
            d.wanted
            for layer in self.primary.layers
            for d in [*layer.downs, *layer._switching]
            if d.wanted is not None
        ]

    def close(self) -> None:
        self.closed = True
        self.downs = []
        self._switching = []
        self._waiting = []
        self._started.clear()
        self._tswitch = []
        for level in self._levels or ():
            level.clear()
        self._levels_used = False
        for tap in self.taps:
            tap.closed = True
        self.taps = []
        self.cache.clear()
        self.missing.clear()

    def stats(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "codec": self.mime_type,
            "ssrc": self.ssrc,
            "rid": self.rid or None,
            "width": self.width,
            "height": self.height,
            "packets": self.packets,
            "bytes": self.bytes,
            "bitrate": int(self.rate.bps),
            "dropped": self.dropped,
            "duplicates": self.duplicates,
            "forwarded": self.forwarded,
            "nacks_sent": self.nacks_sent,
            "nacks_answered": self.nacks_answered,
            "plis_sent": self.plis_sent,
            "keyframes": self.keyframes,
            "muted": self.muted,
            "withheld": self.withheld,
            "jitter_ms": round(self.jitter * 1000 / self.clock_rate, 1),
            "subscribers": len(self.downs),
            "taps": len(self.taps),
        }


__all__ = ["Tap", "UpPacket", "UpTrack"]
