"""WebM (Matroska) files of already-encoded VP8 and Opus frames, muxed by PyAV.

No codec is ever opened: video goes through ``add_mux_stream("vp8")`` (no codec
context at all); the Opus track is copied from a template stream whose codec
parameters carry a valid OpusHead (Matroska requires one as CodecPrivate, and
``add_mux_stream("opus")`` writes none). The template is a hand-built two-page Ogg
Opus header read once per process: its codec context is never opened.

Crash safety: clusters are closed every ``cluster_ms`` and every packet is flushed to
the kernel, so a killed process leaves a file that plays up to (about) the cut; Cues
and the duration are written by :meth:`WebmFile.close`.
"""

from __future__ import annotations

import io
import os
import struct
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from vtp.private_files import FILE_MODE

VIDEO_TIME_BASE = Fraction(1, 90000)
AUDIO_TIME_BASE = Fraction(1, 48000)
OPUS_PRE_SKIP = 312
CONTENT_TYPE = "video/webm"
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


class WebmFile:
    """One WebM file with at most one VP8 and one Opus track.

    ``write`` takes timestamps already in the track's time base (1/90000 video,
    1/48000 audio) relative to the file start; it drops (returns False) a frame whose
    timestamp does not move forward."""

    def __init__(
        self,
        path: Path,
        *,
        video_size: tuple[int, int] | None,
        audio: bool,
        cluster_ms: int = 200,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.path = path
        # Created 0600 first: FFmpeg then writes into it and keeps the mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
        self._container: Any = av.open(
            str(path),
            "w",
            format="webm",
            container_options={
                "cluster_time_limit": str(cluster_ms),
                "flush_packets": FLUSH_PACKETS,
            },
        )
        if metadata:
            self._container.metadata.update(metadata)
        self._video: Any = None
        self._audio: Any = None
        if video_size is not None:
            width, height = video_size
            self._video = self._container.add_mux_stream("vp8", rate=30, width=width, height=height)
            self._video.time_base = VIDEO_TIME_BASE
        if audio:
            self._audio = self._container.add_stream_from_template(opus_template(), opaque=True)
            self._audio.time_base = AUDIO_TIME_BASE
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


def probe_duration(path: Path) -> float:
    """The end of the last packet in a (possibly cut) WebM file, in seconds, demuxing
    only: used for files a crash left behind."""
    end = 0.0
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pts is None or packet.time_base is None:
                continue
            t = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            end = max(end, t)
    return end
