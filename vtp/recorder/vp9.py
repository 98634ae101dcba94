"""VP9 from RTP (RFC 9628, the VP9 payload format): payload descriptors stripped,
the layer frames of one picture put back together.

A picture is the packets sharing one timestamp; the B and E bits mark where each of
its layer frames begins and ends. A picture of one frame is written as it is; a
picture with several spatial layers becomes a superframe (the frames followed by a
superframe index, VP9 Annex B), which is how VP9 decoders and Matroska take them.
A keyframe is a picture whose first frame is an intra frame of spatial layer 0 (P bit
clear); its size is read from the scalability structure when the publisher sends one,
else from the frame's uncompressed header.
"""

from __future__ import annotations

from typing import NamedTuple

from vtp.recorder.bits import BitReader
from vtp.recorder.depacketizer import Built, PacketInfo

_SYNC_CODE = 0x498342
_CS_RGB = 7


class Vp9Descriptor(NamedTuple):
    size: int  # bytes of payload descriptor before the VP9 data
    begins: bool  # B: first packet of a layer frame
    ends: bool  # E: last packet of a layer frame
    inter: bool  # P: the frame refers to an earlier picture
    spatial_id: int
    picture_id: int | None
    picture_id_bits: int
    layer_size: tuple[int, int] | None  # top spatial layer's size, from the SS


def parse_vp9_descriptor(payload: bytes) -> Vp9Descriptor | None:
    """The payload descriptor (RFC 9628 4.2); None if it is truncated."""
    n = len(payload)
    if n < 1:
        return None
    b = payload[0]
    has_pid, inter, has_layers, flexible = b & 0x80, b & 0x40, b & 0x20, b & 0x10
    begins, ends, has_ss = bool(b & 0x08), bool(b & 0x04), b & 0x02
    i = 1
    picture_id: int | None = None
    bits = 0
    if has_pid:
        if n <= i:
            return None
        if payload[i] & 0x80:
            if n <= i + 1:
                return None
            picture_id = ((payload[i] & 0x7F) << 8) | payload[i + 1]
            bits = 15
            i += 2
        else:
            picture_id = payload[i] & 0x7F
            bits = 7
            i += 1
    spatial_id = 0
    if has_layers:
        if n <= i:
            return None
        spatial_id = (payload[i] >> 1) & 0x07
        i += 1 if flexible else 2  # non-flexible mode adds TL0PICIDX
    if flexible and inter:
        for _ in range(3):  # up to three reference indices, N bit: another follows
            if n <= i:
                return None
            more = payload[i] & 0x01
            i += 1
            if not more:
                break
    layer_size: tuple[int, int] | None = None
    if has_ss:
        if n <= i:
            return None
        ss = payload[i]
        i += 1
        layers = (ss >> 5) + 1
        if ss & 0x10:  # Y: each layer's width and height
            if n < i + 4 * layers:
                return None
            top = i + 4 * (layers - 1)
            layer_size = (
                (payload[top] << 8) | payload[top + 1],
                (payload[top + 2] << 8) | payload[top + 3],
            )
            i += 4 * layers
        if ss & 0x08:  # G: the picture group
            if n <= i:
                return None
            groups = payload[i]
            i += 1
            for _ in range(groups):
                if n <= i:
                    return None
                refs = (payload[i] >> 2) & 0x03
                i += 1 + refs
    if n <= i:
        return None
    return Vp9Descriptor(i, begins, ends, bool(inter), spatial_id, picture_id, bits, layer_size)


def vp9_keyframe_size(frame: bytes) -> tuple[int, int] | None:
    """(width, height) if the frame is a VP9 key frame (its uncompressed header, VP9
    bitstream spec 6.2), else None."""
    try:
        bits = BitReader(frame)
        if bits.u(2) != 2:  # frame_marker
            return None
        profile = bits.u(1) | (bits.u(1) << 1)
        if profile == 3:
            bits.u(1)
        if bits.u(1):  # show_existing_frame
            return None
        if bits.u(1) != 0:  # frame_type: 0 is KEY_FRAME
            return None
        bits.u(2)  # show_frame, error_resilient_mode
        if bits.u(24) != _SYNC_CODE:
            return None
        if profile >= 2:
            bits.u(1)  # ten_or_twelve_bit
        if bits.u(3) != _CS_RGB:
            bits.u(1)  # color_range
            if profile in (1, 3):
                bits.u(3)  # subsampling_x, subsampling_y, reserved_zero
        elif profile in (1, 3):
            bits.u(1)
        return bits.u(16) + 1, bits.u(16) + 1
    except ValueError:
        return None


def superframe(frames: list[bytes]) -> bytes:
    """Frames of one picture as a VP9 superframe (Annex B): the frames, then an index
    of their sizes framed by a marker byte at both ends."""
    largest = max(len(f) for f in frames)
    mag = 1 if largest < 1 << 8 else 2 if largest < 1 << 16 else 3 if largest < 1 << 24 else 4
    marker = 0xC0 | ((mag - 1) << 3) | (len(frames) - 1)
    index = bytearray((marker,))
    for frame in frames:
        index += len(frame).to_bytes(mag, "little")
    index.append(marker)
    return b"".join(frames) + bytes(index)


class Vp9:
    """The VP9 side of a :class:`~vtp.recorder.depacketizer.FrameAssembler`."""

    name = "vp9"

    def parse(self, payload: bytes) -> PacketInfo | None:
        desc = parse_vp9_descriptor(payload)
        if desc is None:
            return None
        begins = desc.begins and desc.spatial_id == 0
        return PacketInfo(begins, desc.picture_id, desc.picture_id_bits)

    def build(self, payloads: list[bytes]) -> Built | None:
        frames: list[bytes] = []
        current: list[bytes] | None = None
        first: Vp9Descriptor | None = None
        size: tuple[int, int] | None = None
        for payload in payloads:
            desc = parse_vp9_descriptor(payload)
            if desc is None:
                return None
            first = first or desc
            size = desc.layer_size or size
            if desc.begins:
                if current is not None:
                    return None  # a layer frame without its end
                current = []
            elif current is None:
                return None
            current.append(payload[desc.size :])
            if desc.ends:
                frames.append(b"".join(current))
                current = None
        if current is not None or not frames or first is None:
            return None
        data = frames[0] if len(frames) == 1 else superframe(frames)
        if first.inter or first.spatial_id != 0:
            return Built(data, False, 0, 0)
        header_size = vp9_keyframe_size(frames[0])
        if header_size is None:
            return Built(data, False, 0, 0)
        width, height = size or header_size
        return Built(data, True, width, height)
