"""H.264 from RTP (RFC 6184, packetization-mode 1): single NAL unit packets, STAP-A
aggregates and FU-A fragments back into an access unit in Annex B form.

A keyframe is an access unit with an IDR slice. Its SPS and PPS travel in-band (the
recorder keeps them in the frame, where Matroska's muxer turns them into the avcC of
the file's first keyframe); a publisher that sent them only once gets the last ones
seen put back in front of each IDR, so every keyframe of the file can start decoding.
The interleaved-mode packet types (STAP-B, MTAP, FU-B) are refused. Access units are
taken in timestamp order (decode order = presentation order): B-frames, which WebRTC
publishers do not send, would be dropped as late.
"""

from __future__ import annotations

from vtp.recorder.bits import BitReader
from vtp.recorder.depacketizer import Built, PacketInfo

SLICE = 1
IDR = 5
SPS = 7
PPS = 8
AUD = 9
STAP_A = 24
FU_A = 28
START_CODE = b"\x00\x00\x00\x01"
# profile_idc values whose SPS carries chroma format, bit depths and scaling lists
_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def packet_info(payload: bytes) -> PacketInfo | None:
    """Whether a packet begins a NAL unit (an access unit starts with one); None for a
    packet this depacketizer does not take."""
    if not payload:
        return None
    kind = payload[0] & 0x1F
    if 1 <= kind <= 23 or kind == STAP_A:
        return PacketInfo(True, None, 0)
    if kind == FU_A and len(payload) >= 3:
        return PacketInfo(bool(payload[1] & 0x80), None, 0)
    return None


def nal_units(payloads: list[bytes]) -> list[bytes] | None:
    """The NAL units of one access unit's packets (in sequence order); None if they do
    not fit together (a fragment missing, a malformed aggregate)."""
    nals: list[bytes] = []
    fragment: bytearray | None = None
    for payload in payloads:
        kind = payload[0] & 0x1F
        if kind == FU_A:
            header = payload[1]
            if header & 0x80:
                if fragment is not None:
                    return None
                fragment = bytearray(((payload[0] & 0xE0) | (header & 0x1F),))
            elif fragment is None:
                return None
            fragment += payload[2:]
            if header & 0x40:
                nals.append(bytes(fragment))
                fragment = None
            continue
        if fragment is not None:
            return None
        if kind == STAP_A:
            i = 1
            while i + 2 <= len(payload):
                size = (payload[i] << 8) | payload[i + 1]
                i += 2
                if size == 0 or i + size > len(payload):
                    return None
                nals.append(payload[i : i + size])
                i += size
        else:
            nals.append(payload)
    if fragment is not None:
        return None
    return nals


def _rbsp(nal: bytes) -> bytes:
    """The NAL unit's payload without its header and emulation prevention bytes."""
    return nal[1:].replace(b"\x00\x00\x03", b"\x00\x00")


def _skip_scaling_list(bits: BitReader, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + bits.se()) % 256
        last = nxt or last


def sps_size(sps: bytes) -> tuple[int, int]:
    """(width, height) in pixels after cropping, from an SPS NAL unit (H.264 7.3.2.1.1)."""
    bits = BitReader(_rbsp(sps))
    profile = bits.u(8)
    bits.u(16)  # constraint flags, level
    bits.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in _HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format == 3:
            bits.u(1)  # separate_colour_plane_flag
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.u(1)
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field_flag
    bits.u(1)  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_units * 16
    if bits.u(1):  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        crop_x = 2 if chroma_format in (1, 2) else 1
        crop_y = (2 if chroma_format == 1 else 1) * (2 - frame_mbs_only)
        width -= crop_x * (left + right)
        height -= crop_y * (top + bottom)
    return width, height


class H264:
    """The H.264 side of a :class:`~vtp.recorder.depacketizer.FrameAssembler`; keeps
    the last SPS and PPS seen."""

    name = "h264"

    def __init__(self) -> None:
        self.sps: bytes | None = None
        self.pps: bytes | None = None

    def parse(self, payload: bytes) -> PacketInfo | None:
        return packet_info(payload)

    def build(self, payloads: list[bytes]) -> Built | None:
        nals = nal_units(payloads)
        if not nals:
            return None
        kinds = [nal[0] & 0x1F for nal in nals]
        for nal, kind in zip(nals, kinds, strict=True):
            if kind == SPS:
                self.sps = nal
            elif kind == PPS:
                self.pps = nal
        keyframe = IDR in kinds
        width = height = 0
        if keyframe:
            if self.sps is None or self.pps is None:
                keyframe = False  # cannot start decoding here
            else:
                missing = [n for n, k in ((self.sps, SPS), (self.pps, PPS)) if k not in kinds]
                if missing:
                    at = 1 if kinds[0] == AUD else 0
                    nals[at:at] = missing
                try:
                    width, height = sps_size(self.sps)
                except ValueError:
                    width = height = 0
        return Built(START_CODE + START_CODE.join(nals), keyframe, width, height)
