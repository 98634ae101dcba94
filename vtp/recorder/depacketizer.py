"""Frames from forwarded RTP packets: video frame assembly (VP8 here, RFC 7741; H.264
in :mod:`.h264`, VP9 in :mod:`.vp9`) and Opus pass-through.

The SFU's taps hand over packets in the up track's continuous numbering (the forwarded
sequence number ``fseq`` and unwrapped timestamp ``uts``), in arrival order:
NACK-retransmitted packets arrive late, lost ones never. A video frame is the packets
sharing one timestamp, from the packet that begins it (as the codec's payload header
says) to the one with the marker bit, with no sequence gap. Frames are released in
timestamp order; a frame that cannot be completed within a short reorder window is
dropped, and from then on every frame up to the next keyframe is dropped too (it would
reference a picture the file does not have) and a keyframe is requested. A whole frame
lost between two complete ones is caught by the picture id (when the publisher sends
one) or by the sequence gap between the two.

What differs per codec is a :class:`VideoCodec`: which packet begins a frame, and how
a complete frame's payloads become the codec's bitstream (and whether it is a
keyframe, and its size).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from vtp.sfu import vp8
from vtp.sfu.taps import TapPacket

VIDEO_CLOCK = 90000
AUDIO_CLOCK = 48000
# How long (in RTP time) a frame may wait for missing packets or an earlier missing
# frame (a retransmission) while later frames arrive: 300 ms is a few NACK round trips.
REORDER_WINDOW = VIDEO_CLOCK * 3 // 10
MAX_PENDING_FRAMES = 64
MAX_FRAME_BYTES = 4 * 1024 * 1024


class Frame(NamedTuple):
    ts: int  # unwrapped RTP timestamp
    data: bytes
    keyframe: bool
    width: int = 0  # video keyframes only
    height: int = 0


class PacketInfo(NamedTuple):
    """What the assembler needs of one packet's payload header."""

    begins: bool  # the packet can be the first of a frame
    picture_id: int | None
    picture_id_bits: int


class Built(NamedTuple):
    """A complete frame in the codec's own bitstream form."""

    data: bytes
    keyframe: bool
    width: int
    height: int


class VideoCodec(Protocol):
    name: str  # "vp8", "vp9", "h264"

    def parse(self, payload: bytes) -> PacketInfo | None:
        """The payload header; None for a packet that cannot be used."""

    def build(self, payloads: list[bytes]) -> Built | None:
        """A frame from its packets' payloads (in sequence order); None if they do not
        make one."""


class Vp8:
    """The VP8 side of a :class:`FrameAssembler`."""

    name = "vp8"

    def parse(self, payload: bytes) -> PacketInfo | None:
        desc = vp8.parse_descriptor(payload)
        if desc is None or desc.size >= len(payload):
            return None
        if desc.picture_id < 0:
            return PacketInfo(desc.start, None, 0)
        return PacketInfo(desc.start, desc.picture_id, 15 if desc.long_picture_id else 7)

    def build(self, payloads: list[bytes]) -> Built | None:
        parts = []
        for payload in payloads:
            desc = vp8.parse_descriptor(payload)
            if desc is None or desc.size >= len(payload):
                return None
            parts.append(payload[desc.size :])
        data = b"".join(parts)
        size = vp8.frame_size(data)
        if size is None:
            return Built(data, False, 0, 0)
        return Built(data, True, *size)


class _Partial:
    __slots__ = ("begins", "end", "first", "parts", "picture_id", "size")

    def __init__(self) -> None:
        self.parts: dict[int, bytes] = {}  # fseq -> payload
        self.first: int | None = None  # lowest fseq received
        self.begins = False  # ... and that packet can begin a frame
        self.end: int | None = None  # fseq of the marker packet
        self.picture_id: int | None = None
        self.size = 0

    @property
    def start(self) -> int | None:
        return self.first if self.begins else None

    def complete(self) -> bool:
        return (
            self.begins
            and self.first is not None
            and self.end is not None
            and self.end >= self.first
            and len(self.parts) == self.end - self.first + 1
        )


@dataclass
class AssemblerStats:
    frames: int = 0
    keyframes: int = 0
    dropped_frames: int = 0  # incomplete, late, or waiting for a keyframe
    late_packets: int = 0
    keyframe_requests: int = 0


class FrameAssembler:
    """Video packets in (any order), whole decodable frames out (timestamp order)."""

    def __init__(
        self,
        codec: VideoCodec,
        on_frame: Callable[[Frame], None],
        request_keyframe: Callable[[], None],
    ) -> None:
        self.codec = codec
        self._on_frame = on_frame
        self._request_keyframe = request_keyframe
        self._pending: dict[int, _Partial] = {}
        self._last_ts: int | None = None  # last released (or dropped) timestamp
        self._last_end: int | None = None  # fseq of the last released frame's marker
        self._last_picture_id: int | None = None
        self._picture_id_bits = 0
        self.need_keyframe = True  # a file starts at a keyframe
        self.stats = AssemblerStats()

    def push(self, packet: TapPacket) -> None:
        uts = packet.uts
        if self._last_ts is not None and uts <= self._last_ts:
            self.stats.late_packets += 1
            return
        payload = packet.payload
        info = self.codec.parse(payload)
        if info is None:
            return
        partial = self._pending.get(uts)
        if partial is None:
            if len(self._pending) >= MAX_PENDING_FRAMES:
                self._drop_oldest()
            partial = self._pending[uts] = _Partial()
        fseq = packet.fseq
        if fseq in partial.parts:
            return
        partial.parts[fseq] = payload
        partial.size += len(payload)
        if partial.first is None or fseq < partial.first:
            partial.first = fseq
            partial.begins = info.begins
        if info.picture_id is not None:
            partial.picture_id = info.picture_id
            self._picture_id_bits = info.picture_id_bits
        if packet.marker:
            partial.end = fseq
        if partial.size > MAX_FRAME_BYTES:
            del self._pending[uts]
            self._lost(uts)
            return
        self._release(flush=False)

    def flush(self) -> None:
        """Release what is complete (at the end of a recording); drop the rest."""
        self._release(flush=True)
        self._pending.clear()

    # --- internals ---------------------------------------------------------------------

    def _release(self, flush: bool) -> None:
        """Release frames in timestamp order. A complete frame that follows the last
        released one (picture id or sequence number) goes at once; one after a gap
        waits up to REORDER_WINDOW for the missing frame; an incomplete one is dropped
        once the window has passed."""
        pending = self._pending
        while pending:
            if len(pending) == 1:
                oldest = next(iter(pending))
                waited_out = flush
            else:
                oldest = min(pending)
                waited_out = flush or max(pending) - oldest > REORDER_WINDOW
            partial = pending[oldest]
            if partial.complete():
                if waited_out or not self._gap_before(partial):
                    del pending[oldest]
                    self._emit(oldest, partial)
                    continue
                break
            if waited_out:
                del pending[oldest]
                self._lost(oldest)
                continue
            break

    def _drop_oldest(self) -> None:
        oldest = min(self._pending)
        del self._pending[oldest]
        self._lost(oldest)

    def _lost(self, ts: int) -> None:
        self.stats.dropped_frames += 1
        self._last_ts = ts if self._last_ts is None else max(self._last_ts, ts)
        self._want_keyframe()

    def _want_keyframe(self) -> None:
        self.need_keyframe = True
        self.stats.keyframe_requests += 1
        self._request_keyframe()

    def _gap_before(self, partial: _Partial) -> bool:
        """Was a whole frame lost between the last released frame and this one?"""
        if self._last_end is None:
            return False
        pid = partial.picture_id
        if pid is not None and self._last_picture_id is not None and self._picture_id_bits:
            modulo = 1 << self._picture_id_bits
            return (pid - self._last_picture_id) % modulo != 1
        assert partial.start is not None
        return partial.start != self._last_end + 1

    def _emit(self, ts: int, partial: _Partial) -> None:
        assert partial.start is not None and partial.end is not None
        gap = self._gap_before(partial)
        built = self.codec.build([partial.parts[i] for i in range(partial.start, partial.end + 1)])
        self._last_ts = ts
        self._last_end = partial.end
        self._last_picture_id = partial.picture_id
        if built is None:  # its packets do not make a frame
            self.stats.dropped_frames += 1
            self._want_keyframe()
            return
        data, keyframe, width, height = built
        if gap and not keyframe and not self.need_keyframe:
            self._want_keyframe()
        if self.need_keyframe and not keyframe:
            self.stats.dropped_frames += 1
            return
        self.need_keyframe = False
        self.stats.frames += 1
        if keyframe:
            self.stats.keyframes += 1
        self._on_frame(Frame(ts, data, keyframe, width, height))


class OpusAssembler:
    """One Opus packet is one frame: pass it on in timestamp order, drop late ones."""

    def __init__(self, on_frame: Callable[[Frame], None]) -> None:
        self._on_frame = on_frame
        self._last_ts: int | None = None
        self.stats = AssemblerStats()

    def push(self, packet: TapPacket) -> None:
        uts = packet.uts
        if self._last_ts is not None and uts <= self._last_ts:
            self.stats.late_packets += 1
            return
        if not packet.payload:
            return
        self._last_ts = uts
        self.stats.frames += 1
        self._on_frame(Frame(uts, packet.payload, True))

    def flush(self) -> None:
        return None


class Vp8Assembler(FrameAssembler):
    def __init__(
        self, on_frame: Callable[[Frame], None], request_keyframe: Callable[[], None]
    ) -> None:
        super().__init__(Vp8(), on_frame, request_keyframe)
