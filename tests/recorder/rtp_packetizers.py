"""Test-side encoders and RTP packetizers for the codecs the recorder takes: H.264
(RFC 6184, packetization-mode 1: single NAL unit, STAP-A, FU-A) and VP9 (RFC 9628),
as a publisher's browser or OBS would send them. Packets carry the SFU tap's
continuous numbering (``fseq``, ``uts``)."""

from __future__ import annotations

import fractions
import random
from dataclasses import dataclass

import av

W, H = 320, 180  # 180 is not a multiple of 16: the H.264 SPS crops


@dataclass
class Pkt:
    fseq: int
    uts: int
    marker: int
    payload: bytes


def encode(
    codec: str, count: int, options: dict[str, str], gop: int = 30
) -> list[tuple[bytes, bool]]:
    """``count`` frames of noisy moving pictures (keyframes are several packets), each
    with the encoder's keyframe flag."""
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = W, H, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 30)
    ctx.gop_size = gop
    ctx.bit_rate = 600_000
    ctx.options = options
    noise = random.Random(7).randbytes(W * H * 2)
    out: list[tuple[bytes, bool]] = []
    for i in range(count):
        frame = av.VideoFrame(width=W, height=H, format="yuv420p")
        shift = (i * 5) % (W * H)
        frame.planes[0].update(noise[shift : shift + W * H])
        frame.planes[1].update(b"\x80" * (W * H // 4))
        frame.planes[2].update(b"\x80" * (W * H // 4))
        frame.pts = i
        out.extend((bytes(p), bool(p.is_keyframe)) for p in ctx.encode(frame))
    out.extend((bytes(p), bool(p.is_keyframe)) for p in ctx.encode(None))
    return out


def encode_h264(count: int, profile: str = "high", gop: int = 30) -> list[tuple[bytes, bool]]:
    """Annex B access units from libx264 with SPS/PPS before every IDR, as browsers
    send them."""
    preset = "ultrafast" if profile == "baseline" else "veryfast"
    return encode(
        "libx264",
        count,
        {
            "preset": preset,
            "tune": "zerolatency",
            "profile": profile,
            "x264-params": f"repeat-headers=1:keyint={gop}:min-keyint={gop}:scenecut=0",
        },
        gop,
    )


def encode_vp9(count: int, gop: int = 30) -> list[tuple[bytes, bool]]:
    options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    return encode("libvpx-vp9", count, options, gop)


def nal_units(access_unit: bytes) -> list[bytes]:
    """The NAL units of an Annex B access unit."""
    nals = []
    for chunk in access_unit.split(b"\x00\x00\x01"):
        chunk = chunk.rstrip(b"\x00")
        if chunk:
            nals.append(chunk)
    return nals


def _stap_a(group: list[bytes]) -> bytes:
    if len(group) == 1:
        return group[0]
    nri = max(nal[0] & 0x60 for nal in group)
    return bytes([nri | 24]) + b"".join(len(nal).to_bytes(2, "big") + nal for nal in group)


def h264_payloads(access_unit: bytes, mtu: int) -> list[bytes]:
    """Small NAL units aggregated in STAP-A packets, large ones split into FU-A, the
    rest one per packet."""
    payloads: list[bytes] = []
    group: list[bytes] = []
    for nal in nal_units(access_unit):
        if len(nal) > mtu:
            if group:
                payloads.append(_stap_a(group))
                group = []
            indicator = (nal[0] & 0xE0) | 28
            body = nal[1:]
            chunks = [body[i : i + mtu - 2] for i in range(0, len(body), mtu - 2)]
            for i, chunk in enumerate(chunks):
                header = (nal[0] & 0x1F) | (0x80 if i == 0 else 0)
                header |= 0x40 if i == len(chunks) - 1 else 0
                payloads.append(bytes([indicator, header]) + chunk)
            continue
        if group and sum(len(g) + 2 for g in group) + len(nal) + 3 > mtu:
            payloads.append(_stap_a(group))
            group = []
        group.append(nal)
    if group:
        payloads.append(_stap_a(group))
    return payloads


def packetize_h264(access_units: list[bytes], mtu: int = 400) -> list[Pkt]:
    """RFC 6184 packets; marker on each access unit's last packet."""
    packets: list[Pkt] = []
    seq = 5000
    for n, access_unit in enumerate(access_units):
        payloads = h264_payloads(access_unit, mtu)
        for i, payload in enumerate(payloads):
            packets.append(Pkt(seq, 3000 * n, int(i == len(payloads) - 1), payload))
            seq += 1
    return packets


def vp9_descriptor(
    *,
    picture_id: int,
    inter: bool,
    begins: bool,
    ends: bool,
    spatial_id: int | None = None,
    size: tuple[int, int] | None = None,
) -> bytes:
    """I (15-bit picture id), P, B, E; L (non-flexible: + TL0PICIDX) when a spatial id
    is given; V with one layer's size when ``size`` is given."""
    first = 0x80 | (0x40 if inter else 0) | (0x08 if begins else 0) | (0x04 if ends else 0)
    if spatial_id is not None:
        first |= 0x20
    if size is not None:
        first |= 0x02
    out = bytearray((first, 0x80 | ((picture_id >> 8) & 0x7F), picture_id & 0xFF))
    if spatial_id is not None:
        out += bytes(((spatial_id & 0x07) << 1, 0))
    if size is not None:
        out.append(0x10)  # one spatial layer, Y: its size follows
        out += size[0].to_bytes(2, "big") + size[1].to_bytes(2, "big")
    return bytes(out)


def packetize_vp9(pictures: list[list[bytes]], keyframes: list[bool], mtu: int = 400) -> list[Pkt]:
    """One timestamp per picture; a picture of several frames is sent as spatial
    layers (SID 0, 1, ...), as an SVC publisher sends them."""
    packets: list[Pkt] = []
    seq = 9000
    for n, (frames, key) in enumerate(zip(pictures, keyframes, strict=True)):
        layered = len(frames) > 1
        pieces: list[bytes] = []
        for sid, frame in enumerate(frames):
            chunks = [frame[i : i + mtu] for i in range(0, len(frame), mtu)]
            for i, chunk in enumerate(chunks):
                desc = vp9_descriptor(
                    picture_id=n & 0x7FFF,
                    inter=not key,
                    begins=i == 0,
                    ends=i == len(chunks) - 1,
                    spatial_id=sid if layered else None,
                    size=(W, H) if key and sid == 0 and i == 0 else None,
                )
                pieces.append(desc + chunk)
        for i, payload in enumerate(pieces):
            packets.append(Pkt(seq, 3000 * n, int(i == len(pieces) - 1), payload))
            seq += 1
    return packets
