"""Codec choice, subscriber matching, the aiortc stand-in, and keyframe detection per
codec (H.264 RFC 6184, VP9 RFC 9628)."""

from __future__ import annotations

import struct

import pytest

from vtp.sfu import codecs, codecsdp, h264, negotiation, vp9
from vtp.sfu.codecs import Codec
from vtp.sfu.errors import SfuError
from vtp.sfu.uptrack import UpTrack

SPS = bytes([0x67, 0x42, 0xE0, 0x1F, 0xDA, 0x02])
PPS = bytes([0x68, 0xCE, 0x3C, 0x80])
IDR = bytes([0x65, 0x88, 0x84, 0x00, 0x33])
SLICE = bytes([0x41, 0x9A, 0x02, 0x04])  # non-IDR slice (type 1)


def stap_a(*nals: bytes) -> bytes:
    return bytes([0x78]) + b"".join(struct.pack("!H", len(n)) + n for n in nals)


def fu_a(nal: bytes, start: bool, end: bool = False) -> bytes:
    indicator = (nal[0] & 0xE0) | 28
    header = (0x80 if start else 0) | (0x40 if end else 0) | (nal[0] & 0x1F)
    return bytes([indicator, header]) + nal[1:]


def test_h264_keyframe_start() -> None:
    assert h264.keyframe_start(IDR)  # single NAL unit IDR
    assert h264.keyframe_start(SPS)  # parameter sets sent ahead of the IDR
    assert not h264.keyframe_start(PPS)
    assert not h264.keyframe_start(SLICE)
    assert h264.keyframe_start(stap_a(SPS, PPS, IDR))
    assert h264.keyframe_start(stap_a(PPS, IDR))
    assert not h264.keyframe_start(stap_a(PPS, SLICE))
    assert h264.keyframe_start(fu_a(IDR, start=True))
    assert not h264.keyframe_start(fu_a(IDR, start=False))  # middle of an IDR
    assert not h264.keyframe_start(fu_a(IDR, start=False, end=True))
    assert not h264.keyframe_start(fu_a(SLICE, start=True))  # start of a P frame
    # truncated or hostile payloads are never keyframes, never raise
    for bad in (b"", b"\x78", b"\x7c", stap_a(SLICE)[:-2] + b"\xff\xff", b"\x78\x00\x00\x65"):
        assert not h264.keyframe_start(bad)


def test_h264_profiles() -> None:
    assert h264.profile("42e01f") == "constrained-baseline"
    assert h264.profile("42001f") == "baseline"
    assert h264.profile("4d001f") == "main"
    assert h264.profile("640c1f") == "constrained-high"
    assert h264.profile("64001f") == "high"
    assert h264.profile("zz001f") is None and h264.profile("42e0") is None
    assert h264.can_decode("42e01f", "42e01f")
    assert h264.can_decode("64001f", "42e01f")  # a high decoder decodes baseline streams
    assert h264.can_decode("640c1f", "4d0032")  # levels are not compared
    assert not h264.can_decode("42e01f", "640c1f")  # a constrained baseline one not high
    assert not h264.can_decode("42001f", "4d001f")


def vp9_descriptor(p: bool, b: bool, sid: int | None = None, picture_id: int = 300) -> bytes:
    first = 0x80 | (0x40 if p else 0) | (0x08 if b else 0) | (0x20 if sid is not None else 0)
    out = bytes([first]) + struct.pack("!H", 0x8000 | picture_id)
    if sid is not None:
        out += bytes([sid << 1, 7])  # layer indices (TID 0, SID), TL0PICIDX
    return out + b"\x82\x49\x83"


def test_vp9_keyframe_start() -> None:
    assert vp9.keyframe_start(vp9_descriptor(p=False, b=True))
    assert not vp9.keyframe_start(vp9_descriptor(p=True, b=True))  # inter frame
    assert not vp9.keyframe_start(vp9_descriptor(p=False, b=False))  # not the frame's start
    assert vp9.keyframe_start(vp9_descriptor(p=False, b=True, sid=0))
    # an upper spatial layer of a key picture depends on the base layer
    assert not vp9.keyframe_start(vp9_descriptor(p=False, b=True, sid=1))
    assert vp9.keyframe_start(bytes([0x08, 0x00]))  # no picture id, no layers
    for bad in (b"", b"\x08", bytes([0xA8, 0x80])):
        assert not vp9.keyframe_start(bad)


def test_keyframe_detector_is_chosen_per_track() -> None:
    assert codecs.keyframe_detector("video/H264") is h264.keyframe_start
    assert codecs.keyframe_detector("video/vp9") is vp9.keyframe_start
    assert not codecs.keyframe_detector("audio/opus")(IDR)
    track = UpTrack("t", "video", "video/h264", 90000, 102, "0", 1, lambda b: 0, 2)
    assert track._keyframe_start is h264.keyframe_start


def video_offer(*codec_lines: str, direction: str = "sendonly") -> str:
    pts = [ln.split()[0].split(":")[1] for ln in codec_lines if ln.startswith("a=rtpmap:")]
    return (
        "\r\n".join(
            [
                "v=0",
                "o=- 1 1 IN IP4 0.0.0.0",
                "s=-",
                "t=0 0",
                f"m=video 9 UDP/TLS/RTP/SAVPF {' '.join(pts)}",
                "a=mid:0",
                f"a={direction}",
                "a=ice-ufrag:abcd",
                "a=ice-pwd:abcdefghijklmnopqrstuv",
                "a=fingerprint:sha-256 AA:BB",
                "a=setup:actpass",
                *codec_lines,
            ]
        )
        + "\r\n"
    )


CHROMIUM_LIKE = (
    "a=rtpmap:102 H264/90000",
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f",
    "a=rtpmap:106 H264/90000",
    "a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f",
    "a=rtcp-fb:106 nack pli",
    "a=rtpmap:108 H264/90000",
    "a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    "a=rtpmap:98 VP9/90000",
    "a=fmtp:98 profile-id=0",
)


def test_publisher_codec_choice() -> None:
    vp8 = ("a=rtpmap:96 VP8/90000",)
    chosen = negotiation.sanitize_offer(video_offer(*CHROMIUM_LIKE, *vp8)).media[0]
    assert chosen.codec is not None and chosen.codec.mime_type == "video/vp8"
    # no VP8: the first H.264 entry in packetization-mode 1, in the publisher's order
    chosen = negotiation.sanitize_offer(video_offer(*CHROMIUM_LIKE)).media[0]
    assert chosen.codec is not None and chosen.codec.mime_type == "video/h264"
    assert chosen.codec.param("profile-level-id") == "640c1f"
    assert chosen.lines[0].endswith("SAVPF 106")
    assert "a=rtpmap:106 VP8/90000" in chosen.lines  # what aiortc sees
    assert not any(ln.startswith("a=fmtp:") for ln in chosen.lines)
    assert "a=rtcp-fb:106 nack pli" in chosen.lines
    chosen = negotiation.sanitize_offer(video_offer(*CHROMIUM_LIKE[-2:])).media[0]
    assert chosen.codec is not None and chosen.codec.mime_type == "video/vp9"
    with pytest.raises(SfuError, match=r"VP8, H\.264"):
        negotiation.sanitize_offer(video_offer(*CHROMIUM_LIKE[:2]))  # mode 0 only


def test_subscriber_offer_answered_with_the_stream_codec() -> None:
    stream = Codec(
        "video", "H264", 90000, None, (("packetization-mode", "1"), ("profile-level-id", "42e01f"))
    )
    whep = video_offer(*CHROMIUM_LIKE, direction="recvonly")
    section = negotiation.sanitize_receive_offer(whep, {"video": stream}).media[0]
    # the entry of the stream's own profile (108), though 106 (640c1f) decodes it too
    assert section.lines[0].endswith("SAVPF 108") and section.codec == stream
    without_own = video_offer(*CHROMIUM_LIKE[:5], direction="recvonly")
    section = negotiation.sanitize_receive_offer(without_own, {"video": stream}).media[0]
    assert section.lines[0].endswith("SAVPF 106")  # else the first that decodes it
    high = Codec(
        "video", "H264", 90000, None, (("packetization-mode", "1"), ("profile-level-id", "64001f"))
    )
    with pytest.raises(SfuError, match="does not receive this stream's video codec"):
        negotiation.sanitize_receive_offer(whep, {"video": high})
    vp9_stream = Codec("video", "VP9", 90000, None, (("profile-id", "0"),))
    section = negotiation.sanitize_receive_offer(whep, {"video": vp9_stream}).media[0]
    assert section.lines[0].endswith("SAVPF 98")


def test_write_codec_and_accept_answer() -> None:
    stream = Codec(
        "video",
        "H264",
        90000,
        None,
        (
            ("packetization-mode", "1"),
            ("profile-level-id", "640C1F"),
            ("sprop-parameter-sets", "Z0,aM"),
        ),
    )
    aiortc_offer = negotiation.parse(video_offer("a=rtpmap:97 VP8/90000", "a=rtcp-fb:97 nack pli"))
    codecsdp.write_codec(aiortc_offer, "0", stream, codecs.send_parameters(stream))
    lines = aiortc_offer.media[0].lines
    assert "a=rtpmap:97 H264/90000" in lines
    assert (
        "a=fmtp:97 level-asymmetry-allowed=1;packetization-mode=1;"
        "profile-level-id=640c1f;sprop-parameter-sets=Z0,aM"
    ) in lines
    assert "sprop" not in ";".join(k for k, _ in codecs.answer_parameters(stream))
    # a subscriber that decodes it: shown to aiortc as the stand-in
    answer = negotiation.parse(
        video_offer(
            "a=rtpmap:97 H264/90000",
            "a=fmtp:97 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f",
            direction="recvonly",
        )
    )
    codecsdp.accept_answer(answer, {"0": stream})
    assert "a=rtpmap:97 VP8/90000" in answer.media[0].lines
    # one that does not: a clear error, not garbage on the wire
    answer = negotiation.parse(
        video_offer(
            "a=rtpmap:97 H264/90000",
            "a=fmtp:97 packetization-mode=1;profile-level-id=42e01f",
            direction="recvonly",
        )
    )
    with pytest.raises(SfuError, match=r"does not decode this stream's video codec, video/h264"):
        codecsdp.accept_answer(answer, {"0": stream})
