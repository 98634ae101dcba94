"""Matroska files (WebM for VP8/VP9, .mkv for H.264) of already-encoded frames and
Opus, muxed by PyAV.

No codec is ever opened: VP8/VP9 video goes through ``add_mux_stream`` (no codec
context at all). H.264 needs its SPS/PPS as CodecPrivate (avcC): its stream is copied
from a template, a raw Annex B stream of the first keyframe read by libavformat's
H.264 demuxer (which fills in the size and the extradata). The Opus track is copied
from a template stream whose codec parameters carry a valid OpusHead (Matroska
requires one as CodecPrivate, and ``add_mux_stream("opus")`` writes none): a
hand-built two-page Ogg Opus header read once per process. No template's codec
context is ever opened.

Crash safety: clusters are closed every ``cluster_ms`` and every packet is flushed to
the kernel, so a killed process leaves a file that plays up to (about) the cut; Cues
and the duration are written by :meth:`MatroskaFile.close`, or by :func:`seal` (a
remux, packets copied as they are) for a file a crash left without them.
"""

from __future__ import annotations

import io
import os
import struct
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

VIDEO_TIME_BASE = Fraction(1, 90000)
AUDIO_TIME_BASE = Fraction(1, 48000)
OPUS_PRE_SKIP = 312
# (libavformat muxer, file extension, content type) by video codec; audio-only
# files are WebM
CONTAINERS = {
    "vp8": ("webm", ".webm", "video/webm"),
    "vp9": ("webm", ".webm", "video/webm"),
    "h264": ("matroska", ".mkv", "video/x-matroska"),
}
AUDIO_ONLY = CONTAINERS["vp8"]
# Write every muxed packet through to the kernel at once (crash safety); "0" leaves it
# to libavformat's buffering.
FLUSH_PACKETS = "1"


# --- the Opus template ----------------------------------------------------------------------


def _ogg_crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_CRC = _ogg_crc_table()


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[((crc >> 24) ^ byte) & 0xFF]
    return crc


def _ogg_page(data: bytes, seq: int, flags: int, granule: int = 0) -> bytes:
    segments = [255] * (len(data) // 255) + [len(data) % 255]
    header = b"OggS" + struct.pack("<BBqIIIB", 0, flags, granule, 1, seq, 0, len(segments))
    page = header + bytes(segments) + data
    return page[:22] + struct.pack("<I", _ogg_crc(page)) + page[26:]


def opus_head(channels: int = 2, pre_skip: int = OPUS_PRE_SKIP) -> bytes:
    """RFC 7845 identification header (19 bytes)."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, 48000, 0, 0)


def _ogg_opus_header() -> bytes:
    tags = b"OpusTags" + struct.pack("<I", 3) + b"vtp" + struct.pack("<I", 0)
    silence = b"\xf8\xff\xfe"  # one 20 ms CELT frame: the demuxer wants a data page
    return (
        _ogg_page(opus_head(), 0, 0x02)
        + _ogg_page(tags, 1, 0x00)
        + _ogg_page(silence, 2, 0x04, granule=960 + OPUS_PRE_SKIP)
    )


_template_lock = threading.Lock()
_template: tuple[Any, Any] | None = None  # (input container, its audio stream)


def opus_template() -> Any:
    """The Opus stream every audio track is copied from (built once per process)."""
    global _template
    with _template_lock:
        if _template is None:
            container: Any = av.open(io.BytesIO(_ogg_opus_header()), format="ogg")
            _template = (container, container.streams.audio[0])
        return _template[1]


# --- durations ---------------------------------------------------------------------------


def opus_duration(packet: bytes) -> int:
    """Samples (48 kHz) in one Opus packet, from its TOC byte (RFC 6716 3.1); 960 if unsure."""
    if not packet:
        return 960
    toc = packet[0]
    config = toc >> 3
    if config < 12:
        frame = (480, 960, 1920, 2880)[config & 3]
    elif config < 16:
        frame = (480, 960)[config & 1]
    else:
        frame = (120, 240, 480, 960)[config & 3]
    code = toc & 3
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        count = packet[1] & 0x3F if len(packet) > 1 else 1
    total = frame * max(1, count)
    return total if total <= 5760 else 960


# --- the file ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VideoFormat:
    codec: str  # "vp8", "vp9" or "h264"
    width: int
    height: int
    # H.264: a keyframe in Annex B with its SPS and PPS (the avcC is made from it)
    header: bytes = b""


def extension_for(video_codec: str | None) -> str:
    return (CONTAINERS.get(video_codec or "") or AUDIO_ONLY)[1]


def content_type(name: str) -> str:
    """The content type of a recorded file, by its extension."""
    for _, extension, kind in CONTAINERS.values():
        if name.endswith(extension):
            return kind
    return "application/octet-stream"


def _format_of(path: Path) -> str:
    return "matroska" if path.suffix == ".mkv" else "webm"


def _h264_stream(container: Any, header: bytes) -> Any:
    """An H.264 stream whose codec parameters (size, avcC) come from a keyframe."""
    template: Any = av.open(io.BytesIO(header), format="h264")
    try:
        stream = container.add_stream_from_template(template.streams.video[0], opaque=True)
    finally:
        template.close()
    return stream


class MatroskaFile:
    """One Matroska/WebM file with at most one video (VP8, VP9 or H.264) and one Opus
    track; the container format follows the file's extension (see :data:`CONTAINERS`).

    ``write`` takes timestamps already in the track's time base (1/90000 video,
    1/48000 audio) relative to the file start; it drops (returns False) a frame whose
    timestamp does not move forward."""

    def __init__(
        self,
        path: Path,
        *,
        video: VideoFormat | None,
        audio: bool,
        cluster_ms: int = 200,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.path = path
        self._container: Any = av.open(
            str(path),
            "w",
            format=_format_of(path),
            container_options={
                "cluster_time_limit": str(cluster_ms),
                "flush_packets": FLUSH_PACKETS,
            },
        )
        try:
            if metadata:
                self._container.metadata.update(metadata)
            self._video: Any = None
            self._audio: Any = None
            if video is not None:
                if video.codec == "h264":
                    self._video = _h264_stream(self._container, video.header)
                else:
                    self._video = self._container.add_mux_stream(
                        video.codec, rate=30, width=video.width, height=video.height
                    )
                self._video.time_base = VIDEO_TIME_BASE
            if audio:
                self._audio = self._container.add_stream_from_template(opus_template(), opaque=True)
                self._audio.time_base = AUDIO_TIME_BASE
        except Exception:
            self._container.close()
            raise
        self._last: dict[str, int] = {}
        self.end_s = 0.0  # latest frame end, in seconds from the file start
        self.frames = {"video": 0, "audio": 0}
        self.closed = False

    @property
    def has_video(self) -> bool:
        return self._video is not None

    @property
    def has_audio(self) -> bool:
        return self._audio is not None

    def codec_contexts_open(self) -> bool:
        """True if any stream of this file has an open codec (never, by design)."""
        for stream in (self._video, self._audio):
            ctx = getattr(stream, "codec_context", None) if stream is not None else None
            if ctx is not None and ctx.is_open:
                return True
        return False

    def write(self, kind: str, pts: int, data: bytes, keyframe: bool) -> bool:
        stream = self._video if kind == "video" else self._audio
        if stream is None or self.closed or pts < 0:
            return False
        last = self._last.get(kind)
        if last is not None and pts <= last:
            return False
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        if kind == "video":
            packet.time_base = VIDEO_TIME_BASE
            end = pts / 90000
        else:
            packet.time_base = AUDIO_TIME_BASE
            duration = opus_duration(data)
            packet.duration = duration
            end = (pts + duration) / 48000
        packet.is_keyframe = keyframe
        packet.stream = stream
        self._container.mux(packet)
        self._last[kind] = pts
        self.frames[kind] += 1
        if end > self.end_s:
            self.end_s = end
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._container.close()


def seal(path: Path) -> float:
    """Give a file a crash cut (no Cues, no duration) both, by copying its packets into
    a new file of the same format (no decoding), which then replaces it. Returns the
    end of its last packet in seconds. A partly written last block is left out."""
    sealed = path.with_name(f".{path.name}.sealing")
    end = 0.0
    with av.open(str(path)) as source, av.open(str(sealed), "w", format=_format_of(path)) as target:
        target.metadata.update(source.metadata)
        streams = {}
        for stream in source.streams:
            copy = target.add_stream_from_template(stream, opaque=True)
            copy.time_base = stream.time_base
            streams[stream.index] = copy
        packets = source.demux()
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError:  # the cut itself: keep everything before it
                break
            if packet.dts is None or packet.pts is None or packet.is_corrupt:
                continue
            if packet.time_base is not None:
                t = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                end = max(end, t)
            packet.stream = streams[packet.stream.index]
            target.mux(packet)
    with sealed.open("rb+") as handle:
        os.fsync(handle.fileno())
    sealed.replace(path)
    return end
