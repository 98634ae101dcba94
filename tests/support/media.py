"""Media sources for aiortc test peers, and the reader that recognises their pictures
after encoding, forwarding and decoding.

A :class:`PatternTrack` frame carries its publisher's colour in the chroma planes and a
frame counter as 16 black/white blocks across the top half of the picture:
:func:`read_pattern` reads both back, so a test can tell whose video arrived, in which
order, and whether frames were lost. Audio sources are paced in real time by
:class:`PacedAudioTrack` (48 kHz mono, 20 ms frames); :class:`ToneTrack` is a 440 Hz tone.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import struct
import time

from aiortc import MediaStreamTrack, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

W, H = 320, 240
BITS = 16
BLOCK = W // BITS
# (U, V) chroma per publisher index: distinct colours, far apart
COLOURS = [(60, 200), (200, 60), (60, 60), (200, 200), (128, 40), (40, 128)]
RATE = 48000
SAMPLES = 960  # 20 ms at 48 kHz


class PatternTrack(VideoStreamTrack):
    """320x240 frames: the top half shows the frame counter as 16 black/white blocks,
    the chroma planes carry the publisher's colour."""

    def __init__(self, colour: tuple[int, int]) -> None:
        super().__init__()
        self.colour = colour
        self.count = 0
        self._rows = {0: b"\x10" * BLOCK, 1: b"\xeb" * BLOCK}
        self._bottom = b"\x80" * (W * H // 2)
        self._u = bytes([colour[0]]) * (W * H // 4)
        self._v = bytes([colour[1]]) * (W * H // 4)

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        n = self.count & 0xFFFF
        self.count += 1
        row = b"".join(self._rows[(n >> i) & 1] for i in range(BITS))
        frame = VideoFrame(width=W, height=H, format="yuv420p")
        planes = frame.planes
        if planes[0].line_size != W:
            raise RuntimeError("unexpected stride")
        planes[0].update(row * (H // 2) + self._bottom)
        planes[1].update(self._u)
        planes[2].update(self._v)
        frame.pts = pts
        frame.time_base = time_base
        return frame


def read_pattern(frame: VideoFrame) -> tuple[int, int, int] | None:
    """(counter, U, V) read back from a decoded frame, None if not our pattern size."""
    if frame.width != W or frame.height != H:
        return None
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    y = bytes(frame.planes[0])
    stride = frame.planes[0].line_size
    row = (H // 4) * stride
    n = 0
    for i in range(BITS):
        if y[row + i * BLOCK + BLOCK // 2] > 128:
            n |= 1 << i
    u_plane = bytes(frame.planes[1])
    v_plane = bytes(frame.planes[2])
    cstride = frame.planes[1].line_size
    at = (H // 4 + H // 8) * cstride + W // 4
    return n, u_plane[at], v_plane[at]


def colour_matches(seen: tuple[int, int], colour: tuple[int, int], tolerance: int = 24) -> bool:
    return abs(seen[0] - colour[0]) <= tolerance and abs(seen[1] - colour[1]) <= tolerance


class PacedAudioTrack(MediaStreamTrack):
    """48 kHz mono s16 audio in 20 ms frames, handed out in real time (as a microphone
    would): subclasses say what each frame holds."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._start = 0.0
        self._timestamp = -1

    def samples(self, timestamp: int) -> bytes:
        """The frame's 960 samples (little-endian s16) from ``timestamp`` (in samples)."""
        raise NotImplementedError

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._timestamp < 0:
            self._start = time.time()
            self._timestamp = 0
        else:
            self._timestamp += SAMPLES
            await asyncio.sleep(self._start + self._timestamp / RATE - time.time())
        frame = AudioFrame(format="s16", layout="mono", samples=SAMPLES)
        frame.planes[0].update(self.samples(self._timestamp))
        frame.pts = self._timestamp
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        return frame

    @property
    def started_at(self) -> float:
        """time.time() of the first frame (0.0 before it)."""
        return self._start


def tone(hz: float, amplitude: int = 12000) -> bytes:
    """One frame of a sine tone (``hz`` a multiple of 50 repeats seamlessly)."""
    return b"".join(
        struct.pack("<h", int(amplitude * math.sin(2 * math.pi * hz * i / RATE)))
        for i in range(SAMPLES)
    )


SILENCE = bytes(2 * SAMPLES)


class ToneTrack(PacedAudioTrack):
    """A loud 440 Hz tone, or silence."""

    def __init__(self, loud: bool = True) -> None:
        super().__init__()
        self.loud = loud
        self._tone = tone(440)

    def samples(self, timestamp: int) -> bytes:
        return self._tone if self.loud else SILENCE
