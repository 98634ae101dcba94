"""Test clients for the SFU protocol: a WebSocket signalling client and aiortc peers whose
video carries a colour and a frame counter (tests.support.media, read back after
decoding)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from tests.support.media import PatternTrack, ToneTrack, colour_matches, read_pattern
from tests.support.waiting import eventually
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


RED = (90, 240)  # (U, V) of a PatternTrack
BLUE = (240, 110)


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def publisher_offer(colour: tuple[int, int]) -> tuple[RTCPeerConnection, str]:
    pc = new_pc()
    pc.addTrack(PatternTrack(colour))
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
                    seen = read_pattern(frame)
                    if seen is not None:
                        self.frames.append(seen)
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
        await eventually(lambda: len(self.frames) >= target, within, f"{target} decoded frames")

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()


def assert_frames_show(frames: list[tuple[int, int, int]], colour: tuple[int, int]) -> None:
    """The last decoded frames have the publisher's colour and a rising counter."""
    last = frames[-10:]
    assert len(last) >= 5, frames
    for _, u, v in last:
        assert colour_matches((u, v), colour, tolerance=30), (u, v, colour)
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
