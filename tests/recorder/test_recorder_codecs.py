"""Recording the codecs other publishers send, without re-encoding: H.264 (RFC 6184:
single NAL units, STAP-A, FU-A) into Matroska and VP9 (RFC 9628, spatial layers too)
into WebM, beside Opus. Real encoders on the test side (libx264, libvpx-vp9), a
test-side RTP packetizer, and the recording session fed through the tap interface."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import pytest

from tests.recorder.rtp_packetizers import (
    H,
    Pkt,
    W,
    encode_h264,
    encode_vp9,
    nal_units,
    packetize_h264,
    packetize_vp9,
)
from tests.recorder.test_recorder_session import SILENCE, FakeRoom, ntp, stream
from vtp.recorder.depacketizer import Frame, FrameAssembler
from vtp.recorder.h264 import H264, sps_size
from vtp.recorder.session import RecordingSession
from vtp.recorder.vp9 import Vp9

FRAMES = 60  # 2 s at 30 fps, a keyframe every 30


@pytest.fixture(scope="module")
def h264() -> list[tuple[bytes, bool]]:
    return encode_h264(FRAMES)


@pytest.fixture(scope="module")
def vp9() -> list[tuple[bytes, bool]]:
    return encode_vp9(FRAMES)


class Collector:
    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.keyframe_requests = 0

    def frame(self, frame: Frame) -> None:
        self.frames.append(frame)

    def request(self) -> None:
        self.keyframe_requests += 1


def assemble(codec: Any, packets: list[Pkt]) -> Collector:
    out = Collector()
    assembler = FrameAssembler(codec, out.frame, out.request)
    for packet in packets:
        assembler.push(packet)
    assembler.flush()
    return out


def decode_all(codec: str, frames: list[bytes]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create(codec, "r")
    out: list[av.VideoFrame] = []
    for data in frames:
        out.extend(decoder.decode(av.Packet(data)))
    out.extend(decoder.decode(None))
    return out


def record(tmp_path: Path, video_codec: str, packets: list[Pkt]) -> tuple[dict[str, Any], Path]:
    """Record one publisher's video (these packets) and 2 s of Opus; return the
    manifest's file entry and the file."""
    room = FakeRoom(infos=[stream("s1", "teacher", "video", "audio", video=video_codec)])
    room_any: Any = room
    rec = RecordingSession("r", room_any, tmp_path / "r")
    rec.start()
    room.taps["s1-video"].report = (ntp(1000.0), 0)
    room.taps["s1-audio"].report = (ntp(1000.0), 0)
    audio = iter(range(100))
    for p in packets:
        room.send("s1-video", "video", p)
        if p.marker:  # audio interleaved as it arrives live: 1.67 packets per frame
            for i in audio:
                room.send("s1-audio", "audio", Pkt(i, 960 * i, 1, SILENCE))
                if 960 * i >= p.uts * 48 // 90:
                    break
        assert not rec.codec_contexts_open()
    manifest = rec.stop()
    [entry] = manifest["files"]
    return entry, tmp_path / "r" / entry["name"]


def probe(path: Path) -> dict[str, Any]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = list(container.decode(video=0))
        return {
            "format": container.format.name,
            "codecs": sorted(s.codec_context.name for s in container.streams),
            "duration": (container.duration or 0) / 1_000_000,
            "frames": len(frames),
            "size": (video.codec_context.width, video.codec_context.height),
            "decoded_size": (frames[-1].width, frames[-1].height),
        }


# --- H.264 --------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["baseline", "high"])
def test_h264_sps_gives_the_cropped_size(profile: str) -> None:
    access_unit = encode_h264(1, profile)[0][0]
    sps = next(nal for nal in nal_units(access_unit) if nal[0] & 0x1F == 7)
    assert sps[1] == (66 if profile == "baseline" else 100)  # profile_idc
    assert sps_size(sps) == (W, H)


def test_h264_access_units_come_back_from_single_stap_a_and_fu_a_packets(
    h264: list[tuple[bytes, bool]],
) -> None:
    packets = packetize_h264([data for data, _ in h264])
    assert {p.payload[0] & 0x1F for p in packets} == {1, 24, 28}  # all three kinds
    # reorder neighbours: inside frames and across them
    for i in range(1, len(packets) - 1, 2):
        packets[i], packets[i + 1] = packets[i + 1], packets[i]
    out = assemble(H264(), packets)
    assert [nal_units(f.data) for f in out.frames] == [nal_units(d) for d, _ in h264]
    assert [f.keyframe for f in out.frames] == [key for _, key in h264]
    assert [(f.width, f.height) for f in out.frames if f.keyframe] == [(W, H), (W, H)]
    assert len(decode_all("h264", [f.data for f in out.frames])) == FRAMES
    assert out.keyframe_requests == 0


def test_h264_a_lost_fragment_drops_frames_to_the_next_idr_which_gets_its_sps_back(
    h264: list[tuple[bytes, bool]],
) -> None:
    units = [data for data, _ in h264]
    # a publisher that sends SPS and PPS once, before the first IDR only
    units[30] = b"".join(
        b"\x00\x00\x00\x01" + nal for nal in nal_units(units[30]) if nal[0] & 0x1F not in (7, 8)
    )
    packets = packetize_h264(units)
    fu_of_frame_10 = [
        i for i, p in enumerate(packets) if p.uts == 3000 * 10 and p.payload[0] & 0x1F == 28
    ]
    del packets[fu_of_frame_10[len(fu_of_frame_10) // 2]]  # a middle fragment is lost
    out = assemble(H264(), packets)
    assert [f.ts // 3000 for f in out.frames] == [*range(10), *range(30, FRAMES)]
    assert out.keyframe_requests >= 1
    resumed = out.frames[10]
    assert resumed.keyframe and [n[0] & 0x1F for n in nal_units(resumed.data)][:2] == [7, 8]
    # a decoder that starts at the second IDR decodes everything from there
    assert len(decode_all("h264", [f.data for f in out.frames[10:]])) == FRAMES - 30


def test_h264_is_recorded_to_matroska_without_reencoding(
    tmp_path: Path, h264: list[tuple[bytes, bool]]
) -> None:
    entry, path = record(tmp_path, "video/h264", packetize_h264([d for d, _ in h264]))
    assert path.suffix == ".mkv"
    assert entry["codecs"] == {"video": "h264", "audio": "opus"}
    assert entry["video"] == {"width": W, "height": H}
    found = probe(path)
    assert found["format"] == "matroska,webm"
    assert found["codecs"] == ["h264", "opus"]
    assert found["frames"] == FRAMES
    assert found["size"] == found["decoded_size"] == (W, H)
    assert found["duration"] == pytest.approx(FRAMES / 30, abs=0.1)


# --- VP9 ----------------------------------------------------------------------------------


def test_vp9_is_recorded_to_webm_without_reencoding(
    tmp_path: Path, vp9: list[tuple[bytes, bool]]
) -> None:
    packets = packetize_vp9([[d] for d, _ in vp9], [k for _, k in vp9])
    entry, path = record(tmp_path, "video/VP9", packets)
    assert path.suffix == ".webm"
    assert entry["codecs"] == {"video": "vp9", "audio": "opus"}
    assert entry["video"] == {"width": W, "height": H}
    found = probe(path)
    assert found["codecs"] == ["opus", "vp9"]
    assert found["frames"] == FRAMES
    assert found["size"] == found["decoded_size"] == (W, H)
    assert found["duration"] == pytest.approx(FRAMES / 30, abs=0.1)


def test_vp9_spatial_layers_of_a_picture_become_one_superframe(
    vp9: list[tuple[bytes, bool]],
) -> None:
    # keyframes alone, the other frames two by two as layers 0 and 1 of one picture
    pictures: list[list[bytes]] = []
    keys: list[bool] = []
    for data, key in vp9:
        if key or len(pictures[-1]) == 2 or keys[-1]:
            pictures.append([data])
            keys.append(key)
        else:
            pictures[-1].append(data)
    assert sum(len(p) == 2 for p in pictures) > 20
    out = assemble(Vp9(), packetize_vp9(pictures, keys))
    assert len(out.frames) == len(pictures)
    assert [f.keyframe for f in out.frames] == keys
    two = next(f.data for f, p in zip(out.frames, pictures, strict=True) if len(p) == 2)
    assert two[-1] & 0xE0 == 0xC0 and two[-1] & 0x07 == 1  # superframe index of 2 frames
    assert len(decode_all("vp9", [f.data for f in out.frames])) == FRAMES
