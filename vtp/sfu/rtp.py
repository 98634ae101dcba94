"""RTP wire format helpers for the forwarding path: header parsing and extension blocks.

These work on raw bytes with :mod:`struct`; no packet object is serialised per
subscriber. RFC 3550 (header), RFC 8285 (one-byte header extensions), RFC 7741 (VP8).
"""

from __future__ import annotations

import struct
import time

# Header extension URIs the SFU understands (aiortc negotiates the first three; the SFU
# adds transport-cc to publishers' answers itself).
URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
# simulcast: which encoding (rid) a packet belongs to, until its SSRC is known
URI_RTP_STREAM_ID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
URI_REPAIRED_RTP_STREAM_ID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
SUPPORTED_EXTENSIONS = (URI_MID, URI_AUDIO_LEVEL, URI_ABS_SEND_TIME)
# publishers may also number packets transport-wide (the SFU answers with feedback)
PUBLISH_EXTENSIONS = (*SUPPORTED_EXTENSIONS, URI_TRANSPORT_CC)

SEQ_TS_SSRC = struct.Struct("!HII")
EXT_HEADER = struct.Struct("!HH")
ONE_BYTE_PROFILE = 0xBEDE
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01


def ntp_now() -> int:
    """The current time as a 64-bit NTP timestamp."""
    now = time.time() + NTP_EPOCH_OFFSET
    return int(now * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def abs_send_time_now() -> int:
    """The 24-bit abs-send-time value (6.18 fixed point seconds) for now."""
    return (ntp_now() >> 14) & 0xFFFFFF


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 demultiplexing: RTCP packet types 192-223 (in the PT byte)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


class ParsedRtp:
    """The fields of one incoming RTP packet the SFU needs (no payload copy made
    beyond the payload slice itself)."""

    __slots__ = (
        "audio_level",
        "marker",
        "mid",
        "payload",
        "payload_type",
        "rid",
        "seq16",
        "ssrc",
        "ts",
        "twcc",
    )

    def __init__(
        self,
        payload_type: int,
        marker: int,
        seq16: int,
        ts: int,
        ssrc: int,
        payload: bytes,
        audio_level: int,
        mid: bytes | None,
        twcc: int = -1,
        rid: bytes | None = None,
    ) -> None:
        self.payload_type = payload_type
        self.marker = marker
        self.seq16 = seq16
        self.ts = ts
        self.ssrc = ssrc
        self.payload = payload
        self.audio_level = audio_level
        self.mid = mid
        self.twcc = twcc
        self.rid = rid


def parse_rtp(
    data: bytes, audio_level_id: int, mid_id: int, twcc_id: int = 0, rid_id: int = 0
) -> ParsedRtp | None:
    """Validate and split an RTP packet; None if malformed.

    CSRCs, padding and every header extension other than audio level (RFC 6464, its
    byte returned, -1 if absent), mid and the transport-wide sequence number (-1 if
    absent) and the simulcast rid (None if absent) are dropped: the SFU writes its own."""
    n = len(data)
    if n < 12:
        return None
    b0 = data[0]
    if b0 & 0xC0 != 0x80:
        return None
    b1 = data[1]
    seq16, ts, ssrc = SEQ_TS_SSRC.unpack_from(data, 2)
    offset = 12 + ((b0 & 0x0F) << 2)
    audio_level = -1
    twcc = -1
    mid: bytes | None = None
    rid: bytes | None = None
    if b0 & 0x10:
        if offset + 4 > n:
            return None
        profile, length = EXT_HEADER.unpack_from(data, offset)
        start = offset + 4
        offset = start + (length << 2)
        if offset > n:
            return None
        if profile == ONE_BYTE_PROFILE and (audio_level_id or mid_id or twcc_id or rid_id):
            i = start
            while i < offset:
                b = data[i]
                if b == 0:  # padding
                    i += 1
                    continue
                ext_id = b >> 4
                if ext_id == 15:
                    break
                size = (b & 0x0F) + 1
                i += 1
                if i + size > offset:
                    return None
                if ext_id == audio_level_id:
                    audio_level = data[i]
                elif ext_id == mid_id:
                    mid = data[i : i + size]
                elif ext_id == twcc_id and size == 2:
                    twcc = (data[i] << 8) | data[i + 1]
                elif ext_id == rid_id:
                    rid = data[i : i + size]
                i += size
    end = n
    if b0 & 0x20:
        pad = data[-1]
        if pad == 0 or end - pad < offset:
            return None
        end -= pad
    # an empty payload (padding-only packet, used by senders to probe bandwidth) is
    # returned: it is not forwarded, but its sequence number must be accounted for
    return ParsedRtp(
        b1 & 0x7F, b1 & 0x80, seq16, ts, ssrc, data[offset:end], audio_level, mid, twcc, rid
    )


def vp8_keyframe_start(payload: bytes) -> bool:
    """True if this VP8 payload (RFC 7741) is the first packet of a keyframe."""
    n = len(payload)
    if n < 1:
        return False
    b = payload[0]
    if not b & 0x10 or b & 0x07:  # S bit (start of partition) and PID 0
        return False
    i = 1
    if b & 0x80:  # X: extension byte present
        if n < 2:
            return False
        x = payload[1]
        i = 2
        if x & 0x80:  # I: picture id
            if n <= i:
                return False
            i += 2 if payload[i] & 0x80 else 1
        if x & 0x40:  # L: TL0PICIDX
            i += 1
        if x & 0x30:  # T or K
            i += 1
    if n <= i:
        return False
    return not payload[i] & 0x01  # P bit of the VP8 payload header: 0 = keyframe
