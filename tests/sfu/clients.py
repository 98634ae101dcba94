"""aiortc client peers for the SFU tests: publishers whose frames carry a colour and a
frame counter drawn into the picture, subscribers that decode and read them back."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

from vtp.sfu import aiortc_hooks as hooks
from vtp.sfu import events
from vtp.sfu.peer import Peer

W, H = 320, 240
BITS = 16
BLOCK = W // BITS
# (U, V) chroma per publisher index: distinct colours, far apart
COLOURS = [(60, 200), (200, 60), (60, 60), (200, 200), (128, 40), (40, 128)]


def client_configuration() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[])


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


class ToneTrack(MediaStreamTrack):
    """48 kHz mono: a loud 440 Hz tone, or silence."""

    kind = "audio"

    def __init__(self, loud: bool = True) -> None:
        super().__init__()
        self.loud = loud
        samples = 960
        tone = b"".join(
            struct.pack("<h", int(12000 * math.sin(2 * math.pi * 440 * i / 48000)))
            for i in range(samples)
        )
        self._tone = tone
        self._silence = bytes(2 * samples)
        self._start = 0.0
        self._timestamp = -1

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._timestamp < 0:
            self._start = time.time()
            self._timestamp = 0
        else:
            self._timestamp += 960
            wait = self._start + self._timestamp / 48000 - time.time()
            await asyncio.sleep(wait)
        frame = AudioFrame(format="s16", layout="mono", samples=960)
        frame.planes[0].update(self._tone if self.loud else self._silence)
        frame.pts = self._timestamp
        frame.sample_rate = 48000
        frame.time_base = fractions.Fraction(1, 48000)
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


class Publisher:
    def __init__(self, index: int, audio: bool = True, video: bool = True, loud: bool = True):
        self.index = index
        self.colour = COLOURS[index % len(COLOURS)]
        self.pc = RTCPeerConnection(client_configuration())
        self.video = PatternTrack(self.colour) if video else None
        self.audio = ToneTrack(loud) if audio else None
        if self.video:
            self.pc.addTrack(self.video)
        if self.audio:
            self.pc.addTrack(self.audio)
        self.stream_id = ""

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def publish(self, peer: Peer, label: str = "") -> str:
        pub = await peer.publish(await self.offer(), label=label)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=pub.answer_sdp, type="answer"))
        self.stream_id = pub.id
        return pub.id

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class Received:
    kind: str
    frames: list[tuple[float, int, int, int]] = field(default_factory=list)  # (t, n, U, V)
    audio_frames: int = 0
    first_at: float | None = None
    ended: bool = False


class Subscriber:
    def __init__(self) -> None:
        self.pc = RTCPeerConnection(client_configuration())
        self.received: dict[str, Received] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.created = time.monotonic()

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            rec = Received(track.kind)
            self.received[track.kind] = rec
            self.tasks.append(asyncio.ensure_future(self._read(track, rec)))

    async def _read(self, track: MediaStreamTrack, rec: Received) -> None:
        try:
            while True:
                frame: Any = await track.recv()
                now = time.monotonic()
                if rec.first_at is None:
                    rec.first_at = now
                if track.kind == "video":
                    seen = read_pattern(frame)
                    if seen is not None:
                        rec.frames.append((now, *seen))
                else:
                    rec.audio_frames += 1
        except MediaStreamError:
            rec.ended = True

    async def accept(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def subscribe(self, peer: Peer, stream_id: str) -> str:
        sub = await peer.subscribe(stream_id)
        await peer.answer(sub.id, await self.accept(sub.offer_sdp))
        return sub.id

    def video(self) -> Received:
        return self.received.get("video") or Received("video")

    async def close(self) -> None:
        await self.pc.close()
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class EventLog:
    def __init__(self) -> None:
        self.events: list[events.Event] = []
        self._changed = asyncio.Event()

    def __call__(self, event: events.Event) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, predicate: Any, within: float = 10.0) -> Any:
        deadline = time.monotonic() + within
        while True:
            for event in self.events:
                if predicate(event):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("event not seen")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)


def watch_incoming_rtp(pc: RTCPeerConnection, keep: Callable[[int, int, int], bool]) -> None:
    """Show this client's incoming RTP datagrams to ``keep(ssrc, seq, timestamp)`` before
    SRTP (whose header is in the clear) and drop those it returns False for: loss and
    observation on the wire, as the subscriber sees it."""
    ice = hooks.dtls_transports(pc)[0].transport._connection
    real_receive: Callable[[bytes, int], None] = ice.data_received

    def receive(data: bytes, component: int) -> None:
        if len(data) >= 12 and 128 <= data[0] < 192 and not 192 <= data[1] <= 223:
            seq, ts, ssrc = struct.unpack_from("!HII", data, 2)
            if not keep(ssrc, seq, ts):
                return
        real_receive(data, component)

    ice.data_received = receive


async def wait_until(predicate: Any, within: float = 10.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(interval)
