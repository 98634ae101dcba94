"""Test clients for the SFU protocol: a WebSocket signalling client and aiortc peers whose
video carries a colour and a frame counter (read back after decoding)."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import struct
import time
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

from vtp.config import Config


@pytest.fixture
def config(config: Config) -> Config:
    """The app's ICE agent gathers on loopback, so peers in this process reach it; the
    SFU API tests use rooms of their own naming, so open rooms are on (off by default).
    (Imported by each test module: a conftest.py here would shadow tests/conftest.py.)"""
    return config.model_copy(
        update={
            "ice_addresses": ["127.0.0.1"],
            "room_grace_s": 2.0,
            "peer_timeout_s": 10.0,
            "sfu_open_rooms": True,
        }
    )


W, H = 320, 240
BITS = 12
BLOCK = W // BITS
RED = (90, 240)  # (U, V)
BLUE = (240, 110)


class ColourTrack(VideoStreamTrack):
    """Solid chroma (the colour) with the frame counter as black/white blocks in luma."""

    def __init__(self, colour: tuple[int, int]) -> None:
        super().__init__()
        self.count = 0
        self._u = bytes([colour[0]]) * (W * H // 4)
        self._v = bytes([colour[1]]) * (W * H // 4)

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        n = self.count % (1 << BITS)
        self.count += 1
        row = b"".join((b"\xeb" if (n >> i) & 1 else b"\x10") * BLOCK for i in range(BITS))
        row += b"\x80" * (W - len(row))
        frame = VideoFrame(width=W, height=H, format="yuv420p")
        frame.planes[0].update(row * H)
        frame.planes[1].update(self._u)
        frame.planes[2].update(self._v)
        frame.pts = pts
        frame.time_base = time_base
        return frame


def read_frame(frame: VideoFrame) -> tuple[int, int, int]:
    """(counter, U, V) of a decoded ColourTrack frame."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    y = bytes(frame.planes[0])
    row = (frame.height // 2) * frame.planes[0].line_size
    n = sum(1 << i for i in range(BITS) if y[row + i * BLOCK + BLOCK // 2] > 128)
    at = (frame.height // 4) * frame.planes[1].line_size + frame.width // 4
    return n, bytes(frame.planes[1])[at], bytes(frame.planes[2])[at]


class ToneTrack(MediaStreamTrack):
    """48 kHz mono 440 Hz tone, 20 ms frames."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pcm = b"".join(
            struct.pack("<h", int(12000 * math.sin(2 * math.pi * 440 * i / 48000)))
            for i in range(960)
        )
        self._start = 0.0
        self._ts = -1

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._ts < 0:
            self._start = time.time()
            self._ts = 0
        else:
            self._ts += 960
            await asyncio.sleep(self._start + self._ts / 48000 - time.time())
        frame = AudioFrame(format="s16", layout="mono", samples=960)
        frame.planes[0].update(self._pcm)
        frame.pts = self._ts
        frame.sample_rate = 48000
        frame.time_base = fractions.Fraction(1, 48000)
        return frame


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def publisher_offer(colour: tuple[int, int]) -> tuple[RTCPeerConnection, str]:
    pc = new_pc()
    pc.addTrack(ColourTrack(colour))
    pc.addTrack(ToneTrack())
    await pc.setLocalDescription(await pc.createOffer())
    return pc, str(pc.localDescription.sdp)


async def set_answer(pc: RTCPeerConnection, sdp: str) -> None:
    await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))


class Viewer:
    """A receiving peer connection that decodes video and counts audio frames."""

    def __init__(self) -> None:
        self.pc = new_pc()
        self.frames: list[tuple[int, int, int]] = []
        self.first_frame_at: float | None = None  # time.monotonic() of the first video frame
        self.audio_frames = 0
        self._tasks: list[asyncio.Task[None]] = []

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame: Any = await track.recv()
                if track.kind == "video":
                    self.frames.append(read_frame(frame))
                    if self.first_frame_at is None:
                        self.first_frame_at = time.monotonic()
                else:
                    self.audio_frames += 1

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def wait_frames(self, count: int, within: float = 10.0) -> None:
        """Until ``count`` more video frames than now have been decoded."""
        target = len(self.frames) + count
        deadline = time.monotonic() + within
        while len(self.frames) < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"decoded {len(self.frames)} frames, wanted {target}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()


def colour_close(seen: tuple[int, int], colour: tuple[int, int], tolerance: int = 30) -> bool:
    return abs(seen[0] - colour[0]) <= tolerance and abs(seen[1] - colour[1]) <= tolerance


def assert_frames_show(frames: list[tuple[int, int, int]], colour: tuple[int, int]) -> None:
    """The last decoded frames have the publisher's colour and a rising counter."""
    last = frames[-10:]
    assert len(last) >= 5, frames
    for _, u, v in last:
        assert colour_close((u, v), colour), (u, v, colour)
    counters = [n for n, _, _ in last]
    assert counters == sorted(counters) and counters[-1] > counters[0], counters


class WsClient:
    """A signalling WebSocket: send messages, wait for the ones you expect."""

    def __init__(self, ws: ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inbox: list[dict[str, Any]] = []
        self.seen: list[dict[str, Any]] = []
        self._new = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())
        self._n = 0

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                data = msg.json()
                self.inbox.append(data)
                self.seen.append(data)
                self._new.set()
        self._new.set()

    async def send(self, **message: Any) -> None:
        await self.ws.send_json(message)

    async def request(self, type: str, reply: str, **fields: Any) -> dict[str, Any]:
        """Send a request with a fresh request_id; return its reply (or fail on error)."""
        self._n += 1
        rid = f"r{self._n}"
        await self.send(type=type, request_id=rid, **fields)
        msg = await self.wait(None, request_id=rid)
        assert msg["type"] == reply, msg
        return msg

    async def wait(self, type: str | None, within: float = 10.0, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            for i, msg in enumerate(self.inbox):
                if (type is None or msg.get("type") == type) and all(
                    msg.get(k) == v for k, v in fields.items()
                ):
                    return self.inbox.pop(i)
            if self.ws.closed and self._reader.done():
                raise AssertionError(f"closed while waiting for {type} {fields}: {self.seen}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {type} {fields} in {self.inbox}")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), remaining)

    async def error(self, code: str, **fields: Any) -> dict[str, Any]:
        msg = await self.wait("error", **fields)
        assert msg["error"]["code"] == code, msg
        assert msg["error"]["message"], msg
        return msg

    async def closed(self, within: float = 5.0) -> int | None:
        """Wait until the server has closed the WebSocket; its close code."""
        await asyncio.wait_for(asyncio.shield(self._reader), within)
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()

    def drop(self) -> None:
        """The connection dies without a close frame (the client's network went away)."""
        conn = self.ws._conn  # (aiohttp has no public way to lose a socket)
        assert conn is not None and conn.transport is not None
        conn.transport.abort()
        self._reader.cancel()


async def connect(client: Any, token: str) -> WsClient:
    ws = await client.ws_connect("/api/v1/sfu/ws", headers={"Authorization": f"Bearer {token}"})
    conn = WsClient(ws)
    await conn.wait("authenticated")
    return conn


async def publish(conn: WsClient, colour: tuple[int, int]) -> tuple[RTCPeerConnection, str]:
    pc, offer = await publisher_offer(colour)
    reply = await conn.request("publish", "published", sdp=offer, label="camera")
    await set_answer(pc, reply["sdp"])
    return pc, str(reply["stream_id"])


async def subscribe(conn: WsClient, stream_id: str) -> tuple[Viewer, str]:
    viewer = Viewer()
    offer = await conn.request("subscribe", "offer", stream_id=stream_id)
    answer = await viewer.answer(offer["sdp"])
    sub_id = offer["subscription_id"]
    await conn.request("answer", "answered", subscription_id=sub_id, sdp=answer)
    return viewer, str(sub_id)
