"""The codecs the SFU forwards, and which one each leg uses. Nothing is transcoded.

Audio is Opus. Video is VP8, H.264 (packetization-mode 1, any profile of
:mod:`vtp.sfu.h264`) or VP9: each publication's video codec is chosen from what its offer
lists - VP8 whenever offered (every browser decodes it, and it is the codec the rest of
the SFU - simulcast layers, the recorder's VP8 path - was built and measured on), else
H.264 (what OBS, FFmpeg and GStreamer WHIP publishers send; the first packetization-mode
1 entry of the offer, so the publisher's own profile order decides), else VP9. A
subscriber is answered (or offered) that one codec, under its own payload type, and only
if its side lists a payload type that decodes it (for H.264: packetization-mode 1 and a
profile that contains the stream's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vtp.sfu import h264, vp9
from vtp.sfu.rtp import vp8_keyframe_start

VIDEO_PREFERENCE = ("vp8", "h264", "vp9")
CLOCK_RATES = {"opus": 48000, "vp8": 90000, "h264": 90000, "vp9": 90000}


@dataclass(frozen=True, slots=True)
class Codec:
    """One codec as an SDP names it: ``a=rtpmap`` name, clock rate, channels, and its
    ``a=fmtp`` parameters (as offered, in order)."""

    kind: str
    name: str  # the rtpmap spelling, e.g. "H264"
    clock_rate: int
    channels: int | None = None
    parameters: tuple[tuple[str, str], ...] = ()

    @property
    def mime_type(self) -> str:
        """Lower case, as the rest of the SFU spells it: ``video/h264``."""
        return f"{self.kind}/{self.name.lower()}"

    def param(self, key: str, default: str = "") -> str:
        for k, v in self.parameters:
            if k == key:
                return v
        return default

    def rtpmap(self) -> str:
        text = f"{self.name}/{self.clock_rate}"
        return f"{text}/{self.channels}" if self.channels else text


def parse_fmtp(text: str) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for item in text.split(";"):
        key, _, value = item.strip().partition("=")
        if key:
            pairs.append((key.strip().lower(), value.strip()))
    return tuple(pairs)


def _h264_profile_level_id(codec: Codec) -> str:
    return codec.param("profile-level-id", h264.DEFAULT_PROFILE_LEVEL_ID).lower()


def forwardable(codec: Codec) -> bool:
    """Whether the SFU can forward a stream sent with this codec."""
    name = codec.name.lower()
    if CLOCK_RATES.get(name) != codec.clock_rate:
        return False
    if codec.kind == "audio":
        return name == "opus"
    if name == "h264":
        return (
            codec.param("packetization-mode") == "1"
            and h264.profile(_h264_profile_level_id(codec)) is not None
        )
    return name in VIDEO_PREFERENCE


def choose(kind: str, offered: list[tuple[int, Codec]]) -> tuple[int, Codec] | None:
    """The payload type and codec a publication of this kind uses, from its offer's
    (payload type, codec) list in offer order; None if nothing there is forwardable."""
    usable = [(pt, c) for pt, c in offered if c.kind == kind and forwardable(c)]
    if kind == "audio":
        return usable[0] if usable else None
    for name in VIDEO_PREFERENCE:
        for pt, codec in usable:
            if codec.name.lower() == name:
                return pt, codec
    return None


def decodes(receiver: Codec, stream: Codec) -> bool:
    """Whether a subscriber listing ``receiver`` decodes a stream sent with ``stream``."""
    if receiver.kind != stream.kind or receiver.name.lower() != stream.name.lower():
        return False
    if receiver.clock_rate != stream.clock_rate:
        return False
    name = stream.name.lower()
    if name == "h264":
        return receiver.param("packetization-mode") == "1" and h264.can_decode(
            _h264_profile_level_id(receiver), _h264_profile_level_id(stream)
        )
    if name == "vp9":
        return receiver.param("profile-id", "0") == stream.param("profile-id", "0")
    return True


def receivable(offered: list[tuple[int, Codec]], stream: Codec) -> int | None:
    """The subscriber's payload type for ``stream``: the first one of the stream's own
    H.264 profile (the answer then keeps the offered profile, as RFC 6184 asks), else
    the first that decodes it."""
    usable = [(pt, c) for pt, c in offered if decodes(c, stream)]
    if stream.name.lower() == "h264":
        own = h264.profile(_h264_profile_level_id(stream))
        for pt, c in usable:
            if h264.profile(_h264_profile_level_id(c)) == own:
                return pt
    return usable[0][0] if usable else None


def describe(codec: Codec) -> str:
    """For error messages: ``video/h264 (profile-level-id=640c1f)``."""
    if codec.name.lower() == "h264":
        return f"{codec.mime_type} (profile-level-id={_h264_profile_level_id(codec)})"
    return codec.mime_type


def send_parameters(codec: Codec) -> tuple[tuple[str, str], ...]:
    """The fmtp the server writes for a stream it sends with ``codec`` (its offer to a
    subscriber, or its answer to a publisher): the format parameters, not the sender's
    buffering or rate hints. H.264 keeps ``sprop-parameter-sets`` (a subscriber joining a
    stream whose parameter sets travel only there needs them)."""
    name = codec.name.lower()
    if name == "h264":
        params = [
            ("level-asymmetry-allowed", "1"),
            ("packetization-mode", "1"),
            ("profile-level-id", _h264_profile_level_id(codec)),
        ]
        sprop = codec.param("sprop-parameter-sets")
        if sprop:
            params.append(("sprop-parameter-sets", sprop))
        return tuple(params)
    if name == "vp9":
        return (("profile-id", codec.param("profile-id", "0")),)
    return ()


def answer_parameters(codec: Codec) -> tuple[tuple[str, str], ...]:
    """The fmtp of the server's answer to a publisher: what it receives."""
    return tuple(p for p in send_parameters(codec) if p[0] != "sprop-parameter-sets")


def _never(payload: bytes) -> bool:
    return False


KEYFRAME_START: dict[str, Callable[[bytes], bool]] = {
    "video/vp8": vp8_keyframe_start,
    "video/h264": h264.keyframe_start,
    "video/vp9": vp9.keyframe_start,
}


def keyframe_detector(mime_type: str) -> Callable[[bytes], bool]:
    """The function telling whether a payload of this codec starts a keyframe (chosen once
    per track; audio never does)."""
    return KEYFRAME_START.get(mime_type.lower(), _never)


def capabilities() -> list[dict[str, object]]:
    """What :meth:`vtp.sfu.Sfu.rtp_capabilities` lists."""
    feedback = ["nack", "nack pli", "goog-remb"]
    return [
        {
            "kind": "audio",
            "mimeType": "audio/opus",
            "clockRate": 48000,
            "channels": 2,
            "parameters": {"minptime": 10, "useinbandfec": 1},
        },
        {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000, "rtcpFeedback": feedback},
        *(
            {
                "kind": "video",
                "mimeType": "video/H264",
                "clockRate": 90000,
                "rtcpFeedback": feedback,
                "parameters": {
                    "level-asymmetry-allowed": 1,
                    "packetization-mode": 1,
                    "profile-level-id": plid,
                },
            }
            for plid in ("42e01f", "42001f", "4d001f", "640c1f", "64001f")
        ),
        {
            "kind": "video",
            "mimeType": "video/VP9",
            "clockRate": 90000,
            "rtcpFeedback": feedback,
            "parameters": {"profile-id": 0},
        },
    ]
