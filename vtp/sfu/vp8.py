"""The VP8 RTP payload descriptor (RFC 7741) as far as a forwarding SFU needs it.

A subscriber switched from one simulcast encoding to another must see one continuous
stream: besides sequence numbers and timestamps (:mod:`vtp.sfu.downtrack`), the
descriptor's picture ID and TL0PICIDX must continue where the previous encoding left
off, or the receiver takes the switch for a loss and waits for a keyframe that already
came (measured here with Chromium: 2 of 7 switches froze ~3 s without it). The rewrite
itself runs per packet in C (``fanout.c``, the ``vp8_rewrite`` offsets of a down); this
module reads descriptors (at switches, not per packet) and keyframe sizes. It is the one
VP8 descriptor parser: the recorder's depacketizer reads descriptors with it too.
"""

from __future__ import annotations

from typing import NamedTuple

PICTURE_ID_MOD = 1 << 15
TL0_MOD = 1 << 8


class Descriptor(NamedTuple):
    picture_id: int  # -1: absent
    long_picture_id: bool  # 15-bit (M bit set) rather than 7-bit
    tl0picidx: int  # -1: absent
    tid: int  # temporal layer index, -1: absent
    layer_sync: bool
    start: bool  # S bit with partition index 0: first packet of a frame
    size: int  # bytes of descriptor before the VP8 data (== len(payload): no data)


def parse_descriptor(payload: bytes) -> Descriptor | None:
    """The descriptor's fields, or None if the payload is too short to hold it."""
    n = len(payload)
    if n < 1:
        return None
    b = payload[0]
    start = bool(b & 0x10) and not b & 0x07
    picture_id = -1
    long_id = False
    tl0 = -1
    tid = -1
    sync = False
    i = 1
    if b & 0x80:
        if n < 2:
            return None
        x = payload[1]
        i = 2
        if x & 0x80:
            if n <= i:
                return None
            if payload[i] & 0x80:
                if n <= i + 1:
                    return None
                picture_id = ((payload[i] & 0x7F) << 8) | payload[i + 1]
                long_id = True
                i += 2
            else:
                picture_id = payload[i] & 0x7F
                i += 1
        if x & 0x40:
            if n <= i:
                return None
            tl0 = payload[i]
            i += 1
        if x & 0x20:
            if n <= i:
                return None
            tid = payload[i] >> 6
            sync = bool(payload[i] & 0x20)
        if x & 0x30:  # the TID/Y/KEYIDX byte, there for T or K
            i += 1
    return Descriptor(picture_id, long_id, tl0, tid, sync, start, min(i, n))


TEMPORAL_SYNC = 4  # bits of temporal_info() above the TID
PICTURE_START = 8


def temporal_info(payload: bytes) -> int:
    """The packet's temporal layer index (TID) | Y (layer sync) as
    :data:`TEMPORAL_SYNC` | first packet of a picture as :data:`PICTURE_START`; -1 when
    the descriptor has no TID (or is cut short). Per packet on temporal tracks: a small
    int, no object."""
    n = len(payload)
    if n < 2:
        return -1
    b = payload[0]
    if not b & 0x80:
        return -1
    x = payload[1]
    if not x & 0x20:
        return -1
    i = 2
    if x & 0x80:
        if n <= i:
            return -1
        i += 2 if payload[i] & 0x80 else 1
    if x & 0x40:
        i += 1
    if n <= i:
        return -1
    t = payload[i]
    info = (t >> 6) | ((t & 0x20) >> 3)
    if b & 0x10 and not b & 0x07:
        info |= PICTURE_START
    return info


def keyframe_size(payload: bytes) -> tuple[int, int] | None:
    """(width, height) from the first packet of a VP8 keyframe (RFC 6386 9.1), else None."""
    d = parse_descriptor(payload)
    if d is None or not d.start or d.size >= len(payload):
        return None
    return frame_size(payload, d.size)


def frame_size(data: bytes, at: int = 0) -> tuple[int, int] | None:
    """(width, height) of a VP8 frame whose frame header starts at ``at``, if it is a
    keyframe (RFC 6386 9.1), else None."""
    if len(data) < at + 10 or data[at] & 0x01:
        return None
    if data[at + 3 : at + 6] != b"\x9d\x01\x2a":
        return None
    width = (data[at + 6] | (data[at + 7] << 8)) & 0x3FFF
    height = (data[at + 8] | (data[at + 9] << 8)) & 0x3FFF
    return width, height


def continuing_offsets(
    last_out: Descriptor | None, first_in: Descriptor | None
) -> tuple[int, int] | None:
    """(picture ID offset, TL0PICIDX offset) that make ``first_in`` (a new encoding's
    keyframe, as the publisher numbered it) follow ``last_out`` (the last descriptor
    this subscriber received, as it saw it). None when either lacks a picture ID: then
    nothing is rewritten."""
    if last_out is None or first_in is None:
        return None
    if last_out.picture_id < 0 or first_in.picture_id < 0:
        return None
    pid_offset = (last_out.picture_id + 1 - first_in.picture_id) % PICTURE_ID_MOD
    tl0_offset = 0
    if last_out.tl0picidx >= 0 and first_in.tl0picidx >= 0:
        tl0_offset = (last_out.tl0picidx + 1 - first_in.tl0picidx) % TL0_MOD
    return pid_offset, tl0_offset


def shifted(d: Descriptor, pid_offset: int, tl0_offset: int) -> Descriptor:
    """``d`` as a subscriber with these offsets sees it (the C rewrite, in Python)."""
    pid = d.picture_id
    if pid >= 0:
        pid = (pid + pid_offset) % (PICTURE_ID_MOD if d.long_picture_id else 128)
    tl0 = d.tl0picidx
    if tl0 >= 0:
        tl0 = (tl0 + tl0_offset) % TL0_MOD
    return d._replace(picture_id=pid, tl0picidx=tl0)


__all__ = [
    "PICTURE_START",
    "TEMPORAL_SYNC",
    "Descriptor",
    "continuing_offsets",
    "frame_size",
    "keyframe_size",
    "parse_descriptor",
    "shifted",
    "temporal_info",
]
