"""An H.264 publisher through the SFU is recorded to Matroska without re-encoding: aiortc
encodes H.264 with PyAV and sends it as RFC 6184 packetization-mode 1 (single NAL
units, STAP-A, FU-A), the recorder taps the SFU's up track."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from aiortc import RTCRtpSender

from tests.sfu.clients import EventLog, Publisher
from tests.support.waiting import eventually
from vtp.recorder.session import RecordingSession
from vtp.sfu import Sfu, events

FRAMES = 60


async def test_h264_publisher_is_recorded_to_matroska(
    sfu: Sfu, event_log: EventLog, tmp_path: Path
) -> None:
    room = sfu.room("rec-h264")
    pub = Publisher(1)
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    for transceiver in pub.pc.getTransceivers():
        if transceiver.kind == "video":
            transceiver.setCodecPreferences(h264)
    stream_id = await pub.publish(room.join("obs"))
    await event_log.wait_for(lambda e: isinstance(e, events.StreamAdded))
    rec = RecordingSession("r", room, tmp_path / "r")
    rec.start()
    try:
        video = next(t for t in rec.streams[stream_id].tracks.values() if t.kind == "video")

        def recorded() -> bool:
            rec.tick()  # opens the file once the start wait is over
            return video.frames >= FRAMES

        await eventually(recorded, 20)
    finally:
        manifest = rec.stop()
        await pub.close()
    [entry] = manifest["files"]
    assert entry["name"].endswith(".mkv")
    assert entry["codecs"] == {"video": "h264", "audio": "opus"}
    with av.open(str(tmp_path / "r" / entry["name"])) as container:
        assert sorted(s.codec_context.name for s in container.streams) == ["h264", "opus"]
        frames = list(container.decode(video=0))
        duration = (container.duration or 0) / 1e6
    assert len(frames) == entry["frames"]["video"] >= FRAMES
    assert (frames[-1].width, frames[-1].height) == (320, 240)
    assert duration == pytest.approx(entry["duration_ms"] / 1000, abs=0.1)
