"""aiortc client peers for the SFU tests: publishers whose frames carry a colour and a
frame counter drawn into the picture (tests.support.media), subscribers that decode and
read them back."""

from __future__ import annotations

import asyncio
import contextlib
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
)
from aiortc.mediastreams import MediaStreamError

from tests.support.media import COLOURS, PatternTrack, ToneTrack, read_pattern
from vtp.sfu import aiortc_hooks as hooks
from vtp.sfu import events
from vtp.sfu.peer import Peer


def client_configuration() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[])


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
