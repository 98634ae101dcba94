"""RTCP parsing and building (RFC 3550, 4585, 5104, draft-alvestrand-rmcat-remb).

Parsing never raises on hostile input: a malformed compound packet yields the packets
that parsed before the damage (the rest is ignored)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

SR = 200
RR = 201
SDES = 202
BYE = 203
RTPFB = 205
PSFB = 206

FMT_NACK = 1
FMT_PLI = 1
FMT_FIR = 4
FMT_AFB = 15

_HDR = struct.Struct("!BBH")
_U32 = struct.Struct("!I")
_SR_BODY = struct.Struct("!IQIII")
_BLOCK = struct.Struct("!IIIIII")
_FB = struct.Struct("!II")
_NACK_ITEM = struct.Struct("!HH")


@dataclass(frozen=True, slots=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int  # 0..255 (fixed point /256)
    packets_lost: int  # cumulative, 24-bit signed
    highest_seq: int  # extended
    jitter: int
    lsr: int
    dlsr: int


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp: int
    rtp_ts: int
    packets: int
    octets: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class Nack:
    sender_ssrc: int
    media_ssrc: int
    lost: tuple[int, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Pli:
    sender_ssrc: int
    media_ssrc: int


@dataclass(frozen=True, slots=True)
class Fir:
    sender_ssrc: int
    media_ssrcs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Remb:
    sender_ssrc: int
    bitrate: int
    ssrcs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Bye:
    ssrcs: tuple[int, ...]


RtcpPacket = SenderReport | ReceiverReport | Nack | Pli | Fir | Remb | Bye

MAX_NACK_ITEMS = 64
MAX_REPORTS = 31


def _blocks(data: bytes, start: int, count: int, end: int) -> tuple[ReportBlock, ...]:
    blocks = []
    for i in range(min(count, MAX_REPORTS)):
        pos = start + i * 24
        if pos + 24 > end:
            break
        ssrc, lost_word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, pos)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        blocks.append(ReportBlock(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr))
    return tuple(blocks)


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a (compound) RTCP packet; unknown types are skipped, damage stops parsing."""
    out: list[RtcpPacket] = []
    pos = 0
    n = len(data)
    while pos + 4 <= n:
        b0, pt, length = _HDR.unpack_from(data, pos)
        end = pos + 4 + length * 4
        if b0 >> 6 != 2 or end > n:
            break
        count = b0 & 0x1F
        body = pos + 4
        size = end - body
        if pt == SR and size >= 24:
            ssrc, ntp, rtp_ts, packets, octets = _SR_BODY.unpack_from(data, body)
            out.append(
                SenderReport(
                    ssrc, ntp, rtp_ts, packets, octets, _blocks(data, body + 24, count, end)
                )
            )
        elif pt == RR and size >= 4:
            (ssrc,) = _U32.unpack_from(data, body)
            out.append(ReceiverReport(ssrc, _blocks(data, body + 4, count, end)))
        elif pt == RTPFB and size >= 8 and count == FMT_NACK:
            sender, media = _FB.unpack_from(data, body)
            lost: list[int] = []
            for i in range(min((size - 8) // 4, MAX_NACK_ITEMS)):
                pid, blp = _NACK_ITEM.unpack_from(data, body + 8 + i * 4)
                lost.append(pid)
                for bit in range(16):
                    if blp & (1 << bit):
                        lost.append((pid + bit + 1) & 0xFFFF)
            out.append(Nack(sender, media, tuple(lost)))
        elif pt == PSFB and size >= 8:
            sender, media = _FB.unpack_from(data, body)
            if count == FMT_PLI:
                out.append(Pli(sender, media))
            elif count == FMT_FIR:
                ssrcs = tuple(
                    _U32.unpack_from(data, body + 8 + i * 8)[0]
                    for i in range(min((size - 8) // 8, 16))
                )
                out.append(Fir(sender, ssrcs))
            elif count == FMT_AFB and size >= 16 and data[body + 8 : body + 12] == b"REMB":
                num = data[body + 12]
                exp = data[body + 13] >> 2
                mantissa = ((data[body + 13] & 3) << 16) | (data[body + 14] << 8) | data[body + 15]
                if 16 + 4 * num <= size:
                    ssrcs = tuple(_U32.unpack_from(data, body + 16 + 4 * i)[0] for i in range(num))
                    out.append(Remb(sender, mantissa << exp, ssrcs))
        elif pt == BYE:
            ssrcs = tuple(
                _U32.unpack_from(data, body + 4 * i)[0] for i in range(min(count, size // 4))
            )
            out.append(Bye(ssrcs))
        pos = end
    return out


def _header(count: int, pt: int, body_len: int) -> bytes:
    return _HDR.pack(0x80 | count, pt, body_len // 4)


def _pack_block(b: ReportBlock) -> bytes:
    lost = b.packets_lost
    lost = max(-0x800000, min(0x7FFFFF, lost)) & 0xFFFFFF
    return _BLOCK.pack(
        b.ssrc,
        ((b.fraction_lost & 0xFF) << 24) | lost,
        b.highest_seq & 0xFFFFFFFF,
        b.jitter & 0xFFFFFFFF,
        b.lsr & 0xFFFFFFFF,
        b.dlsr & 0xFFFFFFFF,
    )


def build_sr(ssrc: int, ntp: int, rtp_ts: int, packets: int, octets: int) -> bytes:
    return _header(0, SR, 24) + _SR_BODY.pack(
        ssrc,
        ntp & 0xFFFFFFFFFFFFFFFF,
        rtp_ts & 0xFFFFFFFF,
        packets & 0xFFFFFFFF,
        octets & 0xFFFFFFFF,
    )


def build_rr(ssrc: int, blocks: list[ReportBlock]) -> bytes:
    blocks = blocks[:MAX_REPORTS]
    body = _U32.pack(ssrc) + b"".join(_pack_block(b) for b in blocks)
    return _header(len(blocks), RR, len(body)) + body


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    return _header(FMT_PLI, PSFB, 8) + _FB.pack(sender_ssrc, media_ssrc)


def build_nack(sender_ssrc: int, media_ssrc: int, seqs: list[int]) -> bytes:
    """A generic NACK for 16-bit sequence numbers (grouped into PID + bitmask items)."""
    items: list[bytes] = []
    ordered = sorted(set(s & 0xFFFF for s in seqs))
    i = 0
    while i < len(ordered) and len(items) < MAX_NACK_ITEMS:
        pid = ordered[i]
        blp = 0
        i += 1
        while i < len(ordered):
            diff = (ordered[i] - pid) & 0xFFFF
            if diff > 16:
                break
            blp |= 1 << (diff - 1)
            i += 1
        items.append(_NACK_ITEM.pack(pid, blp))
    body = _FB.pack(sender_ssrc, media_ssrc) + b"".join(items)
    return _header(FMT_NACK, RTPFB, len(body)) + body


def build_remb(sender_ssrc: int, bitrate: int, ssrcs: list[int]) -> bytes:
    bitrate = max(0, int(bitrate))
    exp = 0
    while bitrate >= (1 << 18):
        bitrate >>= 1
        exp += 1
    fci = b"REMB" + bytes(
        (len(ssrcs), (exp << 2) | (bitrate >> 16), (bitrate >> 8) & 0xFF, bitrate & 0xFF)
    )
    fci += b"".join(_U32.pack(s) for s in ssrcs)
    body = _FB.pack(sender_ssrc, 0) + fci
    return _header(FMT_AFB, PSFB, len(body)) + body


def build_bye(ssrcs: list[int]) -> bytes:
    body = b"".join(_U32.pack(s) for s in ssrcs)
    return _header(len(ssrcs), BYE, len(body)) + body
