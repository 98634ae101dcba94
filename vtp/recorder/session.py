"""One recording of one SFU room: a file per published stream plus a manifest.

A :class:`RecordingSession` taps every track of every stream published in the room
while it records, and follows publishers joining and leaving (streams added later get
files of their own; a stream that ends closes its file). Each :class:`StreamRecorder`
turns its tracks' packets into frames, waits until it can place them on one timeline
(the video's first keyframe; the publisher's RTCP sender reports, which tie audio and
video RTP clocks to one wall clock), then writes them to its file as they come. The
file's container follows its video codec (WebM for VP8 and VP9, Matroska for H.264;
audio-only streams are WebM); frames are written as they arrived, never re-encoded.

``manifest.json`` (rewritten atomically whenever a file opens or closes) lists the
files with the publisher, the stream and its offset from the recording's start, so a
player can lay the files side by side; ``state`` is ``recording`` until the session
stops, so a spool scan after a crash knows the files are cut (but playable).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtp.private_files import FILE_MODE, private_dir
from vtp.recorder.depacketizer import (
    AUDIO_CLOCK,
    VIDEO_CLOCK,
    Frame,
    FrameAssembler,
    OpusAssembler,
    VideoCodec,
    Vp8,
)
from vtp.recorder.h264 import H264
from vtp.recorder.matroska import MatroskaFile, VideoFormat, extension_for
from vtp.recorder.vp9 import Vp9

if TYPE_CHECKING:
    from vtp.sfu.taps import StreamInfo, TapHandle, TapPacket, TapRoom

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# Wait this long (after a stream's first frame) for a video keyframe and for sender
# reports of every track before the file is opened with what is known by then.
START_WAIT_S = 6.0
MAX_BUFFERED_FRAMES = 3000  # ~20 s of 30 fps video + 50 pkt/s audio
DEFAULT_VIDEO_SIZE = (640, 480)
NTP_EPOCH_OFFSET = 2208988800
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")
# what the recorder can write, by the SFU's (lower-case) MIME type
VIDEO_CODECS: dict[str, Callable[[], VideoCodec]] = {
    "video/vp8": Vp8,
    "video/vp9": Vp9,
    "video/h264": H264,
}


def ntp_to_unix(ntp: int) -> float:
    return (ntp >> 32) - NTP_EPOCH_OFFSET + (ntp & 0xFFFFFFFF) / (1 << 32)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE), "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def read_manifest(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / MANIFEST).read_text())
    return data


def describe_error(exc: BaseException) -> str:
    """A short, operator-readable reason (disk full is named as such)."""
    errno = getattr(exc, "errno", None)
    if errno == 28 or "No space left" in str(exc):
        return f"disk full: {exc}"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class _Track:
    id: str
    kind: str
    clock: int
    tap: TapHandle | None = None
    assembler: FrameAssembler | OpusAssembler | None = None
    first_ts: int | None = None
    first_arrival: float = 0.0
    base: int = 0  # pts of first_ts in the file, in clock units
    frames: int = 0


@dataclass
class FileEntry:
    name: str
    stream_id: str
    peer_id: str
    label: str
    kinds: list[str]
    offset_ms: int | None = None
    duration_ms: int | None = None
    video: dict[str, int] | None = None
    sync: str | None = None  # "rtcp-sr" or "arrival"
    frames: dict[str, int] = field(default_factory=dict)
    codecs: dict[str, str] = field(default_factory=dict)  # by kind: "vp8", "h264", "opus"
    ended: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stream_id": self.stream_id,
            "peer_id": self.peer_id,
            "label": self.label,
            "kinds": self.kinds,
            "offset_ms": self.offset_ms,
            "duration_ms": self.duration_ms,
            "video": self.video,
            "sync": self.sync,
            "frames": self.frames,
            "codecs": self.codecs,
            "ended": self.ended,
            "error": self.error,
        }


def video_codec_of(info: StreamInfo) -> str | None:
    """The recorded codec of a stream's video track ("vp8", "vp9", "h264"), if any."""
    for track in info.tracks:
        if track.kind == "video" and track.codec.lower() in VIDEO_CODECS:
            return track.codec.lower().removeprefix("video/")
    return None


class StreamRecorder:
    """The file of one published stream (its audio and/or video track)."""

    def __init__(
        self,
        session: RecordingSession,
        info: StreamInfo,
        name: str,
        cluster_ms: int,
    ) -> None:
        self.session = session
        self.info = info
        self.entry = FileEntry(
            name, info.id, info.peer_id, info.label, sorted({t.kind for t in info.tracks})
        )
        self.path = session.directory / name
        self._cluster_ms = cluster_ms
        self.tracks: dict[str, _Track] = {}
        self._buffer: list[tuple[_Track, Frame]] = []
        self._first_frame_at: float | None = None
        self._file: MatroskaFile | None = None
        self._video_codec = video_codec_of(info)
        self._video: VideoFormat | None = None  # known at the first keyframe
        # (file origin on the timeline used, the same instant on the server's clock,
        # whether the timeline is the publisher's sender-report clock)
        self._origin: tuple[float, float, bool] | None = None
        self.closed = False

    # --- taps ------------------------------------------------------------------------

    def attach(self, room: TapRoom) -> None:
        for info in self.info.tracks:
            kind = info.kind
            if kind not in ("audio", "video"):
                continue
            codec = info.codec.lower()
            if (kind == "video" and codec not in VIDEO_CODECS) or (
                kind == "audio" and codec != "audio/opus"
            ):
                log.warning(
                    "recording %s: %s is not recorded (%s)", self.session.id, codec, info.id
                )
                self.entry.error = f"{kind} codec {codec} is not recorded"
                continue
            track = _Track(info.id, kind, VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK)

            def deliver(frame: Frame, track: _Track = track) -> None:
                self._on_frame(track, frame)

            if kind == "video":

                def keyframe(track: _Track = track) -> None:
                    if track.tap is not None:
                        track.tap.request_keyframe()

                track.assembler = FrameAssembler(VIDEO_CODECS[codec](), deliver, keyframe)
            else:
                track.assembler = OpusAssembler(deliver)
            assembler = track.assembler

            def on_packet(_layer: object, packet: TapPacket, push: Any = assembler.push) -> None:
                push(packet)

            try:
                track.tap = room.add_tap(info.id, on_packet)
            except Exception as exc:  # the track went away meanwhile
                log.warning("recording %s: cannot tap track %s: %s", self.session.id, info.id, exc)
                continue
            self.tracks[info.id] = track

    # --- frames ------------------------------------------------------------------------

    def _on_frame(self, track: _Track, frame: Frame) -> None:
        if self.closed:
            return
        if track.first_ts is None:
            track.first_ts = frame.ts
            track.first_arrival = time.time()
            if self._first_frame_at is None:
                self._first_frame_at = time.monotonic()
            if self._file is not None:
                self._place_late_track(track)
        if track.kind == "video" and frame.keyframe and self._video is None:
            codec = self._video_codec or "vp8"
            # an H.264 file is made from its first keyframe (SPS, PPS), whatever the size
            if frame.width or codec == "h264":
                self._video = VideoFormat(codec, frame.width, frame.height, frame.data)
        if self._file is None:
            self._buffer.append((track, frame))
            if len(self._buffer) > MAX_BUFFERED_FRAMES:
                self._buffer.pop(0)
            self.maybe_open()
            return
        self._write(track, frame)

    def _ready(self, now: float) -> bool:
        if self._first_frame_at is None:
            return False
        has_video = any(t.kind == "video" for t in self.tracks.values())
        waiting_for_video = has_video and self._video is None
        if waiting_for_video and self._video_codec == "h264":
            return False  # no H.264 file without the SPS and PPS of a keyframe
        if now - self._first_frame_at >= START_WAIT_S:
            return True
        if waiting_for_video:
            return False
        return all(
            t.tap is not None and t.tap.sender_report() is not None for t in self.tracks.values()
        )

    def maybe_open(self) -> None:
        """Open the file once its timeline can be fixed (called per frame and per tick)."""
        if self._file is not None or self.closed or not self._ready(time.monotonic()):
            return
        started = [t for t in self.tracks.values() if t.first_ts is not None]
        if not started:
            return
        reports = {t.id: t.tap.sender_report() if t.tap is not None else None for t in started}
        use_sr = all(r is not None for r in reports.values())
        starts: dict[str, float] = {}
        for t in started:
            assert t.first_ts is not None
            report = reports[t.id]
            if use_sr and report is not None:
                ntp, sr_ts = report
                starts[t.id] = ntp_to_unix(ntp) + (t.first_ts - sr_ts) / t.clock
            else:
                starts[t.id] = t.first_arrival
        origin = min(starts.values())
        for t in started:
            t.base = round((starts[t.id] - origin) * t.clock)
        # where the file starts on the server's clock (arrival of its earliest frame)
        origin_server = min(t.first_arrival - (starts[t.id] - origin) for t in started)
        self._origin = (origin, origin_server, use_sr)
        has_video = any(t.kind == "video" for t in self.tracks.values())
        has_audio = any(t.kind == "audio" for t in self.tracks.values())
        video = self._video
        if has_video and video is None:
            video = VideoFormat(self._video_codec or "vp8", *DEFAULT_VIDEO_SIZE)
        try:
            self._file = MatroskaFile(
                self.path,
                video=video if has_video else None,
                audio=has_audio,
                cluster_ms=self._cluster_ms,
                metadata={"title": self.info.label or self.info.peer_id},
            )
        except Exception as exc:
            self.fail(exc)
            return
        self.entry.offset_ms = max(0, round((origin_server - self.session.started_unix) * 1000))
        self.entry.sync = "rtcp-sr" if use_sr else "arrival"
        if has_video and video is not None:
            self.entry.video = {"width": video.width, "height": video.height}
            self.entry.codecs["video"] = video.codec
        if has_audio:
            self.entry.codecs["audio"] = "opus"
        buffered, self._buffer = self._buffer, []
        buffered.sort(key=lambda item: self._seconds(*item))
        for track, frame in buffered:
            if not self.writing:  # writing failed
                break
            self._write(track, frame)
        self.session.save()

    def _place_late_track(self, track: _Track) -> None:
        """A track whose first frame comes after the file opened (a microphone turned
        on later): put it where the publisher's clock (or its arrival) says."""
        assert track.first_ts is not None and self._origin is not None
        origin, origin_server, use_sr = self._origin
        report = track.tap.sender_report() if track.tap is not None else None
        if use_sr and report is not None:
            ntp, sr_ts = report
            start = ntp_to_unix(ntp) + (track.first_ts - sr_ts) / track.clock
        else:
            start = origin + (track.first_arrival - origin_server)
        track.base = round((start - origin) * track.clock)

    def _seconds(self, track: _Track, frame: Frame) -> float:
        assert track.first_ts is not None
        return (frame.ts - track.first_ts + track.base) / track.clock

    def _write(self, track: _Track, frame: Frame) -> None:
        file = self._file
        if file is None or track.first_ts is None:
            return
        pts = frame.ts - track.first_ts + track.base
        try:
            if file.write(track.kind, pts, frame.data, frame.keyframe):
                track.frames += 1
        except Exception as exc:
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        """Writing failed (disk full, ...): stop this file, keep what it has."""
        reason = describe_error(exc)
        log.error("recording %s: file %s failed: %s", self.session.id, self.entry.name, reason)
        self.entry.error = reason
        self.session.errors.append(f"{self.entry.name}: {reason}")
        self.close("error")

    def close(self, reason: str) -> None:
        if self.closed:
            return
        for track in self.tracks.values():
            if track.tap is not None:
                track.tap.close()
            if track.assembler is not None and self._file is not None:
                try:
                    track.assembler.flush()
                except Exception:
                    log.exception("flushing track %s failed", track.id)
        self.closed = True
        file, self._file = self._file, None
        self.entry.ended = reason
        self.entry.frames = {t.kind: t.frames for t in self.tracks.values()}
        if file is not None:
            try:
                file.close()
            except Exception as exc:
                self.entry.error = self.entry.error or describe_error(exc)
                log.error(
                    "recording %s: closing %s failed: %s",
                    self.session.id,
                    self.entry.name,
                    self.entry.error,
                )
            self.entry.duration_ms = round(file.end_s * 1000)
        self._buffer.clear()

    @property
    def writing(self) -> bool:
        return self._file is not None and not self.closed

    @property
    def has_file(self) -> bool:
        return self.entry.offset_ms is not None

    def codec_contexts_open(self) -> bool:
        return self._file is not None and self._file.codec_contexts_open()


class RecordingSession:
    """Record every stream of a room until :meth:`stop`."""

    def __init__(
        self,
        recording_id: str,
        room: TapRoom,
        directory: Path,
        *,
        meta: dict[str, Any] | None = None,
        cluster_ms: int = 200,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.id = recording_id
        self.room = room
        self.directory = directory
        self.meta = dict(meta or {})
        self.cluster_ms = cluster_ms
        self.streams: dict[str, StreamRecorder] = {}
        self.finished: list[StreamRecorder] = []
        self.errors: list[str] = []
        self.started_unix = time.time()
        self.ended_unix: float | None = None
        self.stopped = False
        self._on_error = on_error
        self._count = 0

    def start(self) -> None:
        private_dir(self.directory)
        self.save()
        for info in self.room.streams():
            self.add_stream(info)

    # --- following the room ---------------------------------------------------------------

    def add_stream(self, info: StreamInfo) -> None:
        if self.stopped or info.id in self.streams:
            return
        self._count += 1
        who = _SAFE.sub("_", info.peer_id)[:40] or "peer"
        extension = extension_for(video_codec_of(info))
        name = f"{self._count:02d}-{who}-{_SAFE.sub('_', info.id)[:24]}{extension}"
        recorder = StreamRecorder(self, info, name, self.cluster_ms)
        self.streams[info.id] = recorder
        recorder.attach(self.room)
        log.info("recording %s: stream %s of %s -> %s", self.id, info.id, info.peer_id, name)

    def stream_added(self, stream_id: str) -> None:
        for info in self.room.streams():
            if info.id == stream_id:
                self.add_stream(info)
                return

    def stream_removed(self, stream_id: str) -> None:
        recorder = self.streams.pop(stream_id, None)
        if recorder is None:
            return
        recorder.close("stream ended")
        self.finished.append(recorder)
        self.save()

    def tick(self) -> None:
        """Periodic: open files whose start wait ran out; drop streams that failed."""
        for stream_id, recorder in list(self.streams.items()):
            if recorder.closed:  # failed while writing
                del self.streams[stream_id]
                self.finished.append(recorder)
                self.save()
                if self._on_error is not None and recorder.entry.error:
                    self._on_error(recorder.entry.error)
                continue
            recorder.maybe_open()

    def stop(self, reason: str = "stopped") -> dict[str, Any]:
        """Close every file and write the final manifest (state ``closed``)."""
        if not self.stopped:
            self.stopped = True
            self.ended_unix = time.time()
            for stream_id in list(self.streams):
                recorder = self.streams.pop(stream_id)
                recorder.close(reason)
                self.finished.append(recorder)
        return self.save()

    # --- manifest ------------------------------------------------------------------------

    def all_streams(self) -> list[StreamRecorder]:
        return [*self.finished, *self.streams.values()]

    def manifest(self) -> dict[str, Any]:
        files = [r.entry.to_json() for r in self.all_streams() if r.has_file]
        duration = (
            round((self.ended_unix - self.started_unix) * 1000)
            if self.ended_unix is not None
            else None
        )
        return {
            "version": MANIFEST_VERSION,
            "recording_id": self.id,
            "room": self.room.name,
            "state": "closed" if self.stopped else "recording",
            "started_at": iso(self.started_unix),
            "started_unix": self.started_unix,
            "ended_at": iso(self.ended_unix) if self.ended_unix is not None else None,
            "duration_ms": duration,
            "files": files,
            "errors": list(self.errors),
            **{k: v for k, v in self.meta.items() if k not in ("files", "state")},
        }

    def save(self) -> dict[str, Any]:
        data = self.manifest()
        try:
            write_json_atomically(self.directory / MANIFEST, data)
        except OSError as exc:
            reason = describe_error(exc)
            log.error("recording %s: cannot write its manifest: %s", self.id, reason)
            if reason not in self.errors:
                self.errors.append(reason)
            if self._on_error is not None:
                self._on_error(reason)
        return data

    def codec_contexts_open(self) -> bool:
        return any(r.codec_contexts_open() for r in self.all_streams())
