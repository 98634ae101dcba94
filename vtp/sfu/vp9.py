"""VP9 over RTP (RFC 9628): what the SFU reads of the payload descriptor. Payloads,
including the descriptor's own layer indices and scalability structure (SVC, or the
spatial layers a publisher sends in one stream), are forwarded unchanged."""

from __future__ import annotations

_I = 0x80  # picture id present
_P = 0x40  # inter-picture predicted
_L = 0x20  # layer indices present
_B = 0x08  # start of a frame


def keyframe_start(payload: bytes) -> bool:
    """True for the first packet of a key picture: start of frame (B), not inter-picture
    predicted (P clear), and - where layer indices are present - the base spatial layer
    (upper spatial layers of a key picture depend on the base one)."""
    n = len(payload)
    if n < 2:
        return False
    b = payload[0]
    if b & _P or not b & _B:
        return False
    if not b & _L:
        return True
    i = 1
    if b & _I:
        i += 2 if payload[1] & 0x80 else 1
    if i >= n:
        return False
    return (payload[i] >> 1) & 0x07 == 0  # SID
