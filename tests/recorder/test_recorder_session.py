"""RecordingSession against a scripted room (no network): A/V placement from sender
reports, a paused track, a publisher leaving, and a disk that fills up."""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import pytest

from tests.recorder.test_recorder_units import encode_vp8, packetize
from vtp.recorder import session as session_module
from vtp.recorder.session import NTP_EPOCH_OFFSET, RecordingSession
from vtp.sfu.taps import StreamInfo, TrackInfo

SILENCE = b"\xf8\xff\xfe"  # one 20 ms Opus frame


def ntp(unix: float) -> int:
    return int((unix + NTP_EPOCH_OFFSET) * (1 << 32))


@dataclass
class FakeTrack:
    kind: str


@dataclass
class FakeTap:
    room: FakeRoom
    track_id: str
    callback: Any
    report: tuple[int, int] | None = None
    closed: bool = False
    keyframe_requests: int = 0

    def sender_report(self) -> tuple[int, int] | None:
        return self.report

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1

    def close(self) -> None:
        self.closed = True


@dataclass
class Pkt:
    fseq: int
    uts: int
    marker: int
    payload: bytes


@dataclass
class FakeRoom:
    name: str = "room"
    infos: list[StreamInfo] = field(default_factory=list)
    taps: dict[str, FakeTap] = field(default_factory=dict)

    def streams(self) -> list[StreamInfo]:
        return list(self.infos)

    def add_tap(self, track_id: str, callback: Any) -> FakeTap:
        tap = FakeTap(self, track_id, callback)
        self.taps[track_id] = tap
        return tap

    def send(self, track_id: str, kind: str, packet: Pkt) -> None:
        tap = self.taps[track_id]
        if not tap.closed:
            tap.callback(FakeTrack(kind), packet)


def stream(stream_id: str, peer: str, *kinds: str, video: str = "video/vp8") -> StreamInfo:
    codecs = {"video": video, "audio": "audio/opus"}
    tracks = tuple(TrackInfo(f"{stream_id}-{k}", k, codecs[k]) for k in kinds)
    return StreamInfo(stream_id, peer, "", tracks)


def demux_times(path: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"video": [], "audio": []}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pts is not None and packet.time_base is not None:
                times[packet.stream.type].append(float(packet.pts * packet.time_base))
    return times


@pytest.fixture(scope="module")
def vp8() -> list[tuple[bytes, bool]]:
    return encode_vp8(60, keyframe_every=30)


def test_sender_reports_place_audio_and_video_on_one_timeline(
    tmp_path: Path, vp8: list[tuple[bytes, bool]]
) -> None:
    room = FakeRoom(infos=[stream("s1", "teacher", "video", "audio")])
    rec = RecordingSession("r1", room, tmp_path / "r1")  # type: ignore[arg-type]
    rec.start()
    # random RTP bases; the publisher's clock says audio ts 5000 = video ts 777000 + 0.5 s
    t0 = 1_700_000_000.0
    room.taps["s1-video"].report = (ntp(t0), 777000)
    room.taps["s1-audio"].report = (ntp(t0 + 0.5), 5000)
    for p in packetize(vp8):
        room.send("s1-video", "video", Pkt(p.fseq, 777000 + p.uts, p.marker, p.payload))
    for i in range(50):  # 1 s of audio starting at the audio SR's instant
        room.send("s1-audio", "audio", Pkt(i, 5000 + 960 * i, 1, SILENCE))
    manifest = rec.stop()
    entry = manifest["files"][0]
    assert entry["sync"] == "rtcp-sr" and entry["kinds"] == ["audio", "video"]
    times = demux_times(tmp_path / "r1" / entry["name"])
    assert times["video"][0] == pytest.approx(0.0, abs=0.001)
    assert times["audio"][0] == pytest.approx(0.5, abs=0.001)
    assert len(times["video"]) == len(vp8)


def test_a_paused_video_track_leaves_a_gap_not_a_shift(
    tmp_path: Path, vp8: list[tuple[bytes, bool]]
) -> None:
    room = FakeRoom(infos=[stream("s1", "teacher", "video")])
    room_any: Any = room
    rec = RecordingSession("r2", room_any, tmp_path / "r2")
    rec.start()
    room.taps["s1-video"].report = (ntp(1000.0), 0)
    packets = packetize(vp8)
    for p in packets:
        # frames 30.. come 3 s later (the camera was paused), picture ids continue
        shift = 270000 if p.uts >= 30 * 3000 else 0
        room.send("s1-video", "video", Pkt(p.fseq, p.uts + shift, p.marker, p.payload))
    manifest = rec.stop()
    times = demux_times(tmp_path / "r2" / manifest["files"][0]["name"])["video"]
    assert len(times) == 60
    assert times[30] - times[29] == pytest.approx(3.0 + 1 / 30, abs=0.001)
    assert manifest["files"][0]["duration_ms"] == pytest.approx(59 / 30 * 1000 + 3000, abs=2)


def test_publishers_come_and_go_each_with_a_file(
    tmp_path: Path, vp8: list[tuple[bytes, bool]]
) -> None:
    room = FakeRoom(infos=[stream("s1", "teacher", "video")])
    room_any: Any = room
    rec = RecordingSession("r3", room_any, tmp_path / "r3")
    rec.start()
    room.taps["s1-video"].report = (ntp(1000.0), 0)
    room.infos.append(stream("s2", "student", "audio"))
    rec.stream_added("s2")
    room.taps["s2-audio"].report = (ntp(1000.0), 0)
    for i in range(10):
        room.send("s2-audio", "audio", Pkt(i, 960 * i, 1, SILENCE))
    rec.stream_removed("s2")
    assert room.taps["s2-audio"].closed
    for p in packetize(vp8):
        room.send("s1-video", "video", Pkt(p.fseq, p.uts, p.marker, p.payload))
    manifest = rec.stop()
    assert manifest["state"] == "closed"
    by_peer = {f["peer_id"]: f for f in manifest["files"]}
    assert by_peer["student"]["ended"] == "stream ended"
    assert by_peer["student"]["kinds"] == ["audio"]
    assert by_peer["teacher"]["ended"] == "stopped"
    on_disk = json.loads((tmp_path / "r3" / "manifest.json").read_text())
    assert on_disk == manifest


def test_disk_full_while_recording_is_reported(
    tmp_path: Path, vp8: list[tuple[bytes, bool]], monkeypatch: pytest.MonkeyPatch
) -> None:
    room = FakeRoom(infos=[stream("s1", "teacher", "video")])
    room_any: Any = room
    errors: list[str] = []
    rec = RecordingSession("r4", room_any, tmp_path / "r4", on_error=errors.append)
    rec.start()
    room.taps["s1-video"].report = (ntp(1000.0), 0)
    real_write = session_module.MatroskaFile.write
    written = {"n": 0}

    def filling_write(self: Any, kind: str, pts: int, data: bytes, keyframe: bool) -> bool:
        written["n"] += 1
        if written["n"] > 20:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, kind, pts, data, keyframe)

    monkeypatch.setattr(session_module.MatroskaFile, "write", filling_write)
    for p in packetize(vp8):
        room.send("s1-video", "video", Pkt(p.fseq, p.uts, p.marker, p.payload))
    assert room.taps["s1-video"].closed  # the file stopped; the SFU is untouched
    rec.tick()
    assert errors and errors[0].startswith("disk full")
    assert any("disk full" in e for e in rec.errors)
    manifest = rec.stop()
    entry = manifest["files"][0]
    assert entry["error"].startswith("disk full")
    # what was written before the disk filled plays
    times = demux_times(tmp_path / "r4" / entry["name"])["video"]
    assert len(times) == 20
