"""H.264 over RTP (RFC 6184, packetization-mode 1): what the SFU reads of a payload and of
the ``profile-level-id`` parameter. Payloads are forwarded unchanged."""

from __future__ import annotations

NAL_IDR = 5
NAL_SPS = 7
NAL_STAP_A = 24
NAL_FU_A = 28
# NAL units a decoder can start from: an IDR slice, or the sequence parameter set that
# precedes it in the same access unit (a subscriber that starts at the IDR would lack it)
_STARTS = frozenset((NAL_IDR, NAL_SPS))


def keyframe_start(payload: bytes) -> bool:
    """True if this packet can start a decoder: a single NAL unit that is an IDR slice
    or an SPS, a STAP-A aggregating one, or the first fragment (FU-A, S bit) of an IDR."""
    n = len(payload)
    if n < 2:
        return False
    nal = payload[0] & 0x1F
    if nal == NAL_FU_A:
        return bool(payload[1] & 0x80) and payload[1] & 0x1F == NAL_IDR
    if nal == NAL_STAP_A:
        i = 1
        while i + 2 < n:
            size = (payload[i] << 8) | payload[i + 1]
            if size == 0:
                return False
            if payload[i + 2] & 0x1F in _STARTS:
                return True
            i += 2 + size
        return False
    return nal in _STARTS


# profile_idc, the constraint-flags byte mask and value, and the name (RFC 6184 8.1's
# table, as libwebrtc reads it): the first match wins
_PROFILES = (
    (0x42, 0x40, 0x40, "constrained-baseline"),
    (0x4D, 0x80, 0x80, "constrained-baseline"),
    (0x58, 0xC0, 0xC0, "constrained-baseline"),
    (0x42, 0x00, 0x00, "baseline"),
    (0x58, 0x80, 0x80, "baseline"),
    (0x4D, 0x00, 0x00, "main"),
    (0x64, 0x0C, 0x0C, "constrained-high"),
    (0x64, 0x00, 0x00, "high"),
    (0xF4, 0x00, 0x00, "predictive-high-444"),
)
# what a decoder of the key profile also decodes
_DECODES = {
    "constrained-baseline": {"constrained-baseline"},
    "baseline": {"constrained-baseline", "baseline"},
    "main": {"constrained-baseline", "main"},
    "constrained-high": {"constrained-baseline", "main", "constrained-high"},
    "high": {"constrained-baseline", "main", "constrained-high", "high"},
    "predictive-high-444": {"predictive-high-444"},
}
DEFAULT_PROFILE_LEVEL_ID = "42e01f"  # RFC 6184's default when the parameter is absent


def profile(profile_level_id: str) -> str | None:
    """The profile named by a ``profile-level-id`` (6 hex digits), None if unknown."""
    if len(profile_level_id) != 6:
        return None
    try:
        value = int(profile_level_id, 16)
    except ValueError:
        return None
    idc, flags = value >> 16, (value >> 8) & 0xFF
    for p_idc, mask, want, name in _PROFILES:
        if idc == p_idc and flags & mask == want:
            return name
    return None


def can_decode(decoder_profile_level_id: str, stream_profile_level_id: str) -> bool:
    """Whether a decoder advertising one profile-level-id decodes a stream sent with the
    other (levels are not compared: WebRTC peers answer with level-asymmetry-allowed)."""
    decoder = profile(decoder_profile_level_id)
    stream = profile(stream_profile_level_id)
    return decoder is not None and stream is not None and stream in _DECODES[decoder]
