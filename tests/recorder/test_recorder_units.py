"""Unit tests of the recorder's pieces: VP8 frame assembly (loss, reordering, keyframe
gating), Opus pass-through, WebM muxing without codecs, error naming, spool sealing."""

from __future__ import annotations

import asyncio
import fractions
import json
import struct
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import av
import pytest

from tests.recorder.rtp_packetizers import encode_h264
from vtp.config import Config
from vtp.recorder import uploader as uploader_module
from vtp.recorder.depacketizer import (
    Frame,
    OpusAssembler,
    Vp8Assembler,
)
from vtp.recorder.matroska import MatroskaFile, VideoFormat, opus_duration
from vtp.recorder.session import describe_error, write_json_atomically
from vtp.recorder.spool import Spool, seal_cut_recording
from vtp.recorder.uploader import Uploader
from vtp.sfu import vp8 as vp8_payload
from vtp.sfu.rtp import parse_rtp
from vtp.sfu.uptrack import UpTrack
from vtp.storage import MissingBucket, StorageError
from vtp.storage.s3 import s3_error

VP8_160 = VideoFormat("vp8", 160, 120)


@dataclass
class Pkt:
    fseq: int
    uts: int
    marker: int
    payload: bytes


def encode_vp8(
    count: int, keyframe_every: int = 10, width: int = 160, height: int = 120
) -> list[tuple[bytes, bool]]:
    """Real VP8 frames (test-side encoder), 160x120 unless told."""
    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 30)
    ctx.gop_size = keyframe_every
    ctx.options = {"deadline": "realtime", "lag-in-frames": "0"}
    out: list[tuple[bytes, bool]] = []
    for i in range(count):
        frame = av.VideoFrame(width=width, height=height, format="yuv420p")
        frame.planes[0].update(bytes([(i * 7) % 256]) * (width * height))
        frame.planes[1].update(b"\x80" * (width * height // 4))
        frame.planes[2].update(b"\x80" * (width * height // 4))
        frame.pts = i
        out.extend((bytes(p), bool(p.is_keyframe)) for p in ctx.encode(frame))
    out.extend((bytes(p), bool(p.is_keyframe)) for p in ctx.encode(None))
    return out


def packetize(frames: list[tuple[bytes, bool]], mtu: int = 300) -> list[Pkt]:
    """RFC 7741 packets with a 15-bit picture id; fseq/uts continuous."""
    packets: list[Pkt] = []
    seq = 1000
    for n, (data, _) in enumerate(frames):
        chunks = [data[i : i + mtu] for i in range(0, len(data), mtu)]
        for i, chunk in enumerate(chunks):
            start = 0x10 if i == 0 else 0
            desc = bytes([0x80 | start, 0x80, 0x80 | ((n >> 8) & 0x7F), n & 0xFF])
            packets.append(Pkt(seq, 3000 * n, int(i == len(chunks) - 1), desc + chunk))
            seq += 1
    return packets


class Collector:
    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.keyframe_requests = 0

    def frame(self, frame: Frame) -> None:
        self.frames.append(frame)

    def request(self) -> None:
        self.keyframe_requests += 1


@pytest.fixture(scope="module")
def vp8() -> list[tuple[bytes, bool]]:
    return encode_vp8(30, keyframe_every=10)


def test_descriptor_and_keyframe_header(vp8: list[tuple[bytes, bool]]) -> None:
    # (the recorder reads descriptors and frame headers with the SFU's VP8 module)
    desc = vp8_payload.parse_descriptor(bytes([0x90, 0x80, 0x81, 0x02, 0xAA]))
    assert desc is not None and desc.start and desc.picture_id == 0x102 and desc.size == 4
    assert vp8_payload.parse_descriptor(bytes([0x90, 0x80])) is None  # truncated
    assert vp8_payload.frame_size(vp8[0][0]) == (160, 120)  # a keyframe, its size
    assert vp8_payload.frame_size(vp8[1][0]) is None  # not a keyframe


def test_frames_reassembled_in_order_despite_reordering(vp8: list[tuple[bytes, bool]]) -> None:
    packets = packetize(vp8, mtu=12)
    assert len(packets) > 2 * len(vp8)  # frames of several packets
    # swap neighbours after the first packet: reordering inside and across frames
    for i in range(1, len(packets) - 1, 2):
        packets[i], packets[i + 1] = packets[i + 1], packets[i]
    out = Collector()
    asm = Vp8Assembler(out.frame, out.request)
    for p in packets:
        asm.push(p)
    asm.flush()
    assert [f.data for f in out.frames] == [d for d, _ in vp8]
    assert [f.ts for f in out.frames] == [3000 * i for i in range(len(vp8))]
    assert out.keyframe_requests == 0


def test_loss_requests_a_keyframe_and_resumes_at_the_next(vp8: list[tuple[bytes, bool]]) -> None:
    packets = packetize(vp8)
    lost_frame = 3  # a delta frame: frames 3..9 cannot be decoded, 10 is a keyframe
    first = next(i for i, p in enumerate(packets) if p.uts == 3000 * lost_frame)
    del packets[first]  # one packet of frame 3 never arrives
    out = Collector()
    asm = Vp8Assembler(out.frame, out.request)
    for p in packets:
        asm.push(p)
    asm.flush()
    released = [f.ts // 3000 for f in out.frames]
    assert released == [0, 1, 2, *range(10, len(vp8))]
    assert out.keyframe_requests >= 1
    assert out.frames[3].keyframe
    # what is released decodes without a single error
    decoder = av.CodecContext.create("vp8", "r")
    decoded = 0
    for f in out.frames:
        decoded += len(decoder.decode(av.Packet(f.data)))
    assert decoded == len(out.frames)


def test_a_whole_lost_frame_is_seen_by_its_picture_id(vp8: list[tuple[bytes, bool]]) -> None:
    packets = [p for p in packetize(vp8) if p.uts != 3000 * 5]  # frame 5 vanished entirely
    out = Collector()
    asm = Vp8Assembler(out.frame, out.request)
    for p in packets:
        asm.push(p)
    assert [f.ts // 3000 for f in out.frames] == [0, 1, 2, 3, 4, *range(10, len(vp8))]
    assert out.keyframe_requests == 1


def test_a_stream_starting_mid_gop_waits_for_a_keyframe(vp8: list[tuple[bytes, bool]]) -> None:
    packets = [p for p in packetize(vp8) if p.uts >= 3000 * 4]
    out = Collector()
    asm = Vp8Assembler(out.frame, out.request)
    for p in packets:
        asm.push(p)
    assert out.frames[0].ts == 3000 * 10 and out.frames[0].keyframe


def test_opus_passes_through_and_drops_late_packets() -> None:
    out = Collector()
    asm = OpusAssembler(out.frame)
    for uts in (0, 960, 1920, 960, 2880):
        asm.push(Pkt(uts // 960, uts, 1, b"\xfc\x01\x02"))
    assert [f.ts for f in out.frames] == [0, 960, 1920, 2880]
    assert asm.stats.late_packets == 1
    assert opus_duration(b"\xfc") == 960  # CELT 20 ms, one frame
    assert opus_duration(b"\x78") == 960  # SILK 20 ms (config 15: hybrid 20 ms)
    assert opus_duration(b"\xfd") == 1920  # two 20 ms frames


def test_webm_has_no_open_codec_and_decodes(tmp_path: Path, vp8: list[tuple[bytes, bool]]) -> None:
    path = tmp_path / "a.webm"
    webm = MatroskaFile(path, video=VP8_160, audio=True)
    assert not webm.codec_contexts_open()
    silence = b"\xf8\xff\xfe"
    for i, (data, key) in enumerate(vp8):
        assert webm.write("video", 3000 * i, data, key)
        assert webm.write("audio", 1600 * i, silence, True)
    assert not webm.write("video", 0, vp8[0][0], True)  # timestamps must move forward
    assert not webm.codec_contexts_open()
    webm.close()
    with av.open(str(path)) as container:
        assert sorted(s.codec_context.name for s in container.streams) == ["opus", "vp8"]
        audio = container.streams.audio[0]
        assert audio.codec_context.extradata[:8] == b"OpusHead"
        frames = list(container.decode(video=0))
    assert len(frames) == len(vp8)


def test_disk_full_is_named(tmp_path: Path) -> None:
    webm = MatroskaFile(Path("/dev/full"), video=VP8_160, audio=False)
    with pytest.raises(OSError) as info:
        for i in range(200):
            webm.write("video", 3000 * i, b"\x00" * 5000, True)
        webm.close()
    assert describe_error(info.value).startswith("disk full")


def test_missing_bucket_is_named() -> None:
    class Fake(Exception):
        code = "NoSuchBucket"

    error = s3_error(Fake("x"), "upload of a", "vtp")
    assert isinstance(error, MissingBucket)
    assert "bucket 'vtp' does not exist" in str(error)


CUES = b"\x1c\x53\xbb\x6b"  # the Matroska Cues element's ID


@pytest.mark.parametrize(("codec", "torn"), [("vp8", 0), ("vp8", 9), ("h264", 9)])
def test_a_cut_recording_is_sealed_with_duration_and_cues(
    tmp_path: Path, vp8: list[tuple[bytes, bool]], codec: str, torn: int
) -> None:
    """A file as SIGKILL leaves it (``torn``: the last block only partly written) gets
    its duration and Cues by a remux, and its manifest says where it was cut."""
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    directory = spool.root / "5a0d3e9c-0000-4000-8000-000000000001"
    directory.mkdir()
    name = f"01-teacher-s1{'.mkv' if codec == 'h264' else '.webm'}"
    if codec == "h264":
        frames = encode_h264(30, gop=10)
        video = VideoFormat("h264", 320, 180, frames[0][0])
    else:
        frames, video = vp8, VP8_160
    live = MatroskaFile(tmp_path / name, video=video, audio=True)
    for i, (data, key) in enumerate(frames):
        live.write("video", 3000 * i, data, key)
        live.write("audio", 1600 * i, b"\xf8\xff\xfe", True)
    cut = (tmp_path / name).read_bytes()  # what a killed process leaves on disk
    live.close()
    (directory / name).write_bytes(cut[: len(cut) - torn])
    assert CUES not in cut
    with av.open(str(directory / name)) as container:
        assert container.duration is None
    manifest = {
        "state": "recording",
        "started_unix": 1000.0,
        "files": [{"name": name, "offset_ms": 500, "kinds": ["audio", "video"]}],
    }
    write_json_atomically(directory / "manifest.json", manifest)
    assert [e.state for e in spool.scan()] == ["recording"]
    sealed = seal_cut_recording(directory)
    assert sealed["state"] == "closed"
    entry = sealed["files"][0]
    assert 0.6 < entry["duration_ms"] / 1000 <= 1.0
    assert sealed["duration_ms"] == 500 + entry["duration_ms"]
    assert sealed["ended_reason"] == "cut"
    assert sealed["cut_at_unix"] == pytest.approx(1000.5 + entry["duration_ms"] / 1000, abs=0.01)
    assert json.loads((directory / "manifest.json").read_text())["state"] == "closed"
    assert [e.state for e in spool.scan()] == ["closed"]
    assert [p.name for p in directory.iterdir() if p.name != "manifest.json"] == [name]
    assert CUES in (directory / name).read_bytes()
    with av.open(str(directory / name)) as container:
        assert container.duration / 1e6 == pytest.approx(entry["duration_ms"] / 1000, abs=0.05)
        decoded = list(container.decode(video=0))
        assert len(decoded) >= 0.6 * 30
        middle = container.duration // 2
        container.seek(middle)
        first = next(container.decode(video=0))
        # at (or just before) the middle: the keyframe (every 10 frames) before it
        assert middle / 1e6 - 0.34 <= float(first.time) <= middle / 1e6 + 0.01
        assert float(first.time) > 0


class ScriptedStore:
    """Answers pings (or not) as the test says; uploads go through ``Attempts``."""

    name = "scripted"

    def __init__(self) -> None:
        self.answers = False
        self.pings = 0

    async def ping(self) -> None:
        self.pings += 1
        if not self.answers:
            raise StorageError("ping: connection refused") from ConnectionRefusedError()


class Attempts(Uploader):
    """The real retry machinery; each upload attempt fails with ``self.failure`` (or
    succeeds when it is None)."""

    failure: Exception | None = None
    attempts = 0

    async def upload(self, recording_id: uuid.UUID) -> None:
        self.attempts += 1
        if self.failure is not None:
            raise self.failure


def refused() -> StorageError:
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError as exc:
        error = StorageError("upload: connection refused")
        error.__cause__ = exc
        return error


@pytest.mark.parametrize("outage", [True, False])
async def test_waiting_uploads_are_retried_when_the_store_answers_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outage: bool
) -> None:
    """An upload that could not reach the store is retried as soon as the store answers
    (not at its 10-minute backoff); one the store refused while answering keeps its
    backoff."""

    async def no_note(*args: object, **kwargs: object) -> None:
        return None

    monkeypatch.setattr(uploader_module, "STORE_PROBE_S", 0.05)
    monkeypatch.setattr(uploader_module.recordings, "note_error", no_note)
    config = Config().model_copy(
        update={"recording_retry_first_s": 600.0, "recording_retry_max_s": 600.0}
    )
    store = ScriptedStore()
    store.answers = not outage
    uploader = Attempts(config, Spool(tmp_path), store, None)  # type: ignore[arg-type]
    uploader.failure = refused() if outage else StorageError("AccessDenied")
    uploader.start()
    try:
        rid = uuid.uuid4()
        uploader.submit(rid)
        deadline = time.monotonic() + 5
        while rid not in uploader.waiting() or store.pings < 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert uploader.attempts == 1
        uploader.failure = None
        store.answers = True
        deadline = time.monotonic() + 5
        if outage:
            while rid in uploader.pending:
                assert time.monotonic() < deadline, "not retried when the store answered"
                await asyncio.sleep(0.02)
            assert uploader.attempts == 2 and not uploader.waiting()
        else:
            pings = store.pings
            while store.pings < pings + 10:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            assert uploader.attempts == 1 and rid in uploader.waiting()
    finally:
        await uploader.close()


def test_a_tap_moving_up_a_simulcast_track_records_one_decodable_file(tmp_path: Path) -> None:
    """The recorder's tap starts on the low layer and moves to the high one at its
    keyframe (vtp.sfu.uptrack.Tap): the file goes on at the new size and decodes."""
    low, high = encode_vp8(6, 30), encode_vp8(12, 30, 320, 240)
    layers = [
        UpTrack("t", "video", "video/vp8", 90000, 96, "1", ssrc, lambda d: len(d), 9, rid=rid)
        for ssrc, rid in ((11, "q"), (22, "f"))
    ]
    layers[0].add_layer(layers[1])
    collected = Collector()
    assembler = Vp8Assembler(collected.frame, collected.request)
    layers[0].add_tap(lambda _up, packet: assembler.push(packet))

    def send(layer: int, seq: int, ts: int, pid: int, data: bytes) -> int:
        chunks = [data[i : i + 300] for i in range(0, len(data), 300)]
        for i, chunk in enumerate(chunks):
            desc = bytes([0x90 if i == 0 else 0x80, 0x80, 0x80 | (pid >> 8), pid & 0xFF])
            b1 = (0x80 if i == len(chunks) - 1 else 0) | 96
            head = struct.pack("!BBHII", 0x80, b1, seq, ts, layers[layer].ssrc or 0)
            parsed = parse_rtp(head + desc + chunk, 0, 0)
            assert parsed is not None
            layers[layer].receive(parsed)
            seq += 1
        return seq

    # each layer its own numbering, timestamps and picture IDs, as simulcast sends them
    seq, ts, pid = [100, 40000], [5000, 3_000_000], [7, 20000]
    for n in range(12):
        for layer, frames in enumerate((low, high)):
            if n < len(frames):
                seq[layer] = send(layer, seq[layer], ts[layer], pid[layer], frames[n][0])
                ts[layer] += 3000
                pid[layer] += 1
    sizes = [(f.width, f.height) for f in collected.frames if f.keyframe]
    assert sizes == [(160, 120), (320, 240)]  # the low keyframe, then the high one
    path = tmp_path / "moved.webm"
    webm = MatroskaFile(path, video=VideoFormat("vp8", 160, 120), audio=False)
    for frame in collected.frames:
        assert webm.write("video", frame.ts, frame.data, frame.keyframe)
    webm.close()
    with av.open(str(path)) as container:
        decoded = [(f.width, f.height) for f in container.decode(video=0)]
    assert decoded == [(160, 120)] + [(320, 240)] * 12
