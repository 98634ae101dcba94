"""Helpers of the recorder tests: aiortc publishers whose audio and video flash in step
(to measure A/V alignment in the recorded file), a SeaweedFS restart on the same ports
and data, and the API calls that set up a live session."""

from __future__ import annotations

import array
import math
import struct
import time
import uuid
from pathlib import Path
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from av import AudioFrame, VideoFrame
from helpers import bearer

from tests.support.media import RATE, SAMPLES, PacedAudioTrack

W, H = 320, 240
PERIOD_S = 1.0  # a flash (bright picture + tone) starts every second...
FLASH_S = 0.3  # ...and lasts this long


def flash_on(t: float, epoch: float) -> bool:
    return (t - epoch) % PERIOD_S < FLASH_S


class FlashVideo(VideoStreamTrack):
    def __init__(self, epoch: float) -> None:
        super().__init__()
        self.epoch = epoch
        self._bright = b"\xeb" * (W * H)
        self._dark = b"\x10" * (W * H)
        self._chroma = b"\x80" * (W * H // 4)

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=W, height=H, format="yuv420p")
        on = flash_on(time.time(), self.epoch)
        frame.planes[0].update(self._bright if on else self._dark)
        frame.planes[1].update(self._chroma)
        frame.planes[2].update(self._chroma)
        frame.pts = pts
        frame.time_base = time_base
        return frame


class FlashAudio(PacedAudioTrack):
    """A 1 kHz tone during flashes, silence between."""

    def __init__(self, epoch: float) -> None:
        super().__init__()
        self.epoch = epoch

    def samples(self, timestamp: int) -> bytes:
        values = []
        for i in range(SAMPLES):
            t = self.started_at + (timestamp + i) / RATE
            value = int(12000 * math.sin(2 * math.pi * 1000 * t)) if flash_on(t, self.epoch) else 0
            values.append(value)
        return struct.pack(f"<{len(values)}h", *values)


class FlashPublisher:
    def __init__(self, epoch: float, video: bool = True, audio: bool = True) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        if video:
            self.pc.addTrack(FlashVideo(epoch))
        if audio:
            self.pc.addTrack(FlashAudio(epoch))
        self.stream_id = ""

    async def publish(self, peer: Any) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        pub = await peer.publish(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=pub.answer_sdp, type="answer"))
        self.stream_id = pub.id
        return str(pub.id)

    async def close(self) -> None:
        await self.pc.close()


# --- analysis of a recorded file ------------------------------------------------------------


def onsets(times: list[float], values: list[bool]) -> list[float]:
    """Times where the signal turns on (after at least 0.2 s off)."""
    found = []
    last_on = -10.0
    previous = True
    for t, on in zip(times, values, strict=True):
        if on and not previous and t - last_on > 0.2 + FLASH_S:
            found.append(t)
        if on:
            last_on = t
        previous = on
    return found


def analyse(path: Path) -> dict[str, Any]:
    """Decode every frame: codecs, duration, frame counts, flash onsets per track."""
    import av

    out: dict[str, Any] = {"video_times": [], "video_on": [], "audio_times": [], "audio_on": []}
    with av.open(str(path)) as container:
        out["duration"] = (container.duration or 0) / 1_000_000
        out["codecs"] = sorted(s.codec_context.name for s in container.streams)
        for frame in container.decode(*container.streams):
            if isinstance(frame, VideoFrame):
                luma = bytes(frame.planes[0])[::97]
                mean = sum(luma) / len(luma)
                out["video_times"].append(float(frame.time))
                out["video_on"].append(mean > 128)
            elif isinstance(frame, AudioFrame):
                if frame.format.name != "fltp":
                    raise AssertionError(f"unexpected decoded audio format {frame.format.name}")
                samples = array.array("f", bytes(frame.planes[0]))[: frame.samples]
                step = 240  # 5 ms windows
                for i in range(0, len(samples), step):
                    level = max(abs(x) for x in samples[i : i + step])
                    out["audio_times"].append(float(frame.time) + i / frame.sample_rate)
                    out["audio_on"].append(level > 0.1)
    out["video_frames"] = len(out["video_times"])
    out["audio_windows"] = len(out["audio_times"])
    out["video_onsets"] = onsets(out["video_times"], out["video_on"])
    out["audio_onsets"] = onsets(out["audio_times"], out["audio_on"])
    return out


def av_offsets(result: dict[str, Any]) -> list[float]:
    """For each video flash onset, the nearest audio onset minus it (seconds)."""
    pairs = []
    for v in result["video_onsets"]:
        nearest = min(result["audio_onsets"], key=lambda a: abs(a - v), default=None)
        if nearest is not None and abs(nearest - v) < PERIOD_S / 2:
            pairs.append(nearest - v)
    return pairs


# --- API set-up ------------------------------------------------------------------------------


async def live_session(client: Any, accounts: Any, *, auto_record: bool = False) -> dict[str, Any]:
    """A teacher's course with an enrolled student, a student of no course (outsider),
    and a live session of the course."""
    teacher = await accounts.with_role("teacher")
    student = await accounts.register()
    student_tokens = await accounts.login(student["user"]["email"], student["password"])
    outsider = await accounts.register()
    outsider_tokens = await accounts.login(outsider["user"]["email"], outsider["password"])
    th = bearer(teacher["access_token"])
    resp = await client.post(
        "/api/v1/courses", json={"code": "REC-" + uuid.uuid4().hex[:6], "title": "Rec"}, headers=th
    )
    assert resp.status == 201, await resp.text()
    course = await resp.json()
    resp = await client.post(
        f"/api/v1/courses/{course['id']}/enrollments",
        json={"user_id": student["user"]["id"], "role": "student"},
        headers=th,
    )
    assert resp.status == 201, await resp.text()
    start = time.time()
    resp = await client.post(
        f"/api/v1/courses/{course['id']}/sessions",
        json={
            "title": "Recorded class",
            "scheduled_start": _iso(start + 60),
            "scheduled_end": _iso(start + 3600),
            "auto_record": auto_record,
        },
        headers=th,
    )
    assert resp.status == 201, await resp.text()
    session = await resp.json()
    resp = await client.post(f"/api/v1/sessions/{session['id']}/start", headers=th)
    assert resp.status == 200, await resp.text()
    session = await resp.json()
    return {
        "teacher": th,
        "teacher_id": teacher["user"]["id"],
        "student": bearer(student_tokens["access_token"]),
        "outsider": bearer(outsider_tokens["access_token"]),
        "course": course,
        "session": session,
    }


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat()
