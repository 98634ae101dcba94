"""Transport-wide congestion control feedback for publishers (the receive side of
draft-holmer-rmcat-transport-wide-cc-extensions-01).

A publisher that negotiated the transport-wide sequence number extension numbers every
packet it sends on the transport (audio, video and padding probes alike). The SFU notes
when each arrives and, every :data:`FEEDBACK_INTERVAL_S`, tells the publisher which
arrived and when (RTCP transport feedback, PT 205 FMT 15). The publisher's own
congestion controller (Chromium's send-side bandwidth estimation) turns that into its
target bitrate; the SFU's REMB stays an upper bound from what subscribers can take.

Packets are reported once: the next feedback starts after the highest number reported,
so a packet arriving after its number was reported missing counts as lost.
"""

from __future__ import annotations

import struct
import time

FEEDBACK_INTERVAL_S = 0.1
MAX_STATUS = 300  # sequence numbers per feedback packet (keeps it well under the MTU)
MAX_PENDING = 4096  # arrivals remembered between two feedbacks (bounds a flood)
MAX_JUMP = 4096  # a larger jump in numbering is a restart, not loss
DELTA_US = 250  # receive deltas are in multiples of 250 µs
REFERENCE_US = 64_000  # the reference time is in multiples of 64 ms

_FIXED = struct.Struct("!BBHIIHHI")  # header, sender/media SSRC, base, count, ref+fb count


class TransportFeedback:
    """Arrival times of one publication's packets, turned into feedback packets."""

    def __init__(self, sender_ssrc: int) -> None:
        self.sender_ssrc = sender_ssrc
        self.media_ssrc = 0
        self._epoch_ns = time.monotonic_ns()
        self._arrivals: dict[int, int] = {}  # unwrapped sequence number -> arrival (µs)
        self._base: int | None = None  # first number the next feedback reports
        self._highest = -1
        self._count = 0  # feedback packet count, 8 bits on the wire
        self.sent = 0
        self.recorded = 0

    def now_us(self) -> int:
        return (time.monotonic_ns() - self._epoch_ns) // 1000

    def us_at(self, monotonic_ns: int) -> int:
        """``monotonic_ns`` on this feedback's clock."""
        return max(0, monotonic_ns - self._epoch_ns) // 1000

    def record(self, seq: int, media_ssrc: int, arrival_us: int) -> None:
        """A packet carrying transport-wide sequence number ``seq`` arrived (the
        connection's own 16-bit numbering, not an RTP stream's; unwrapped: ``twseq``)."""
        if self._base is None:
            twseq = seq
            self._base = self._highest = twseq
        else:
            delta = (seq - self._highest) & 0xFFFF
            twseq = self._highest + delta if delta < 0x8000 else self._highest + delta - 0x10000
            if twseq > self._highest + MAX_JUMP or twseq < self._base - MAX_JUMP:
                # the sender restarted its numbering: start over from here
                self._arrivals.clear()
                self._base = self._highest = twseq
            elif twseq > self._highest:
                self._highest = twseq
        if twseq < self._base or len(self._arrivals) >= MAX_PENDING:
            return  # already reported (as lost), or a flood
        self.recorded += 1
        self.media_ssrc = media_ssrc
        self._arrivals.setdefault(twseq, arrival_us)

    def build(self) -> list[bytes]:
        """Feedback packets for every number since the last call, up to the highest seen;
        [] when nothing arrived."""
        base = self._base
        if not self._arrivals or base is None:
            return []
        packets: list[bytes] = []
        end = self._highest + 1
        while base < end:
            if not any(s in self._arrivals for s in range(base, min(end, base + MAX_STATUS))):
                base = min(end, base + MAX_STATUS)  # a stretch with nothing received
                continue
            packet, base = self._encode(base, end)
            packets.append(packet)
        self._arrivals.clear()
        self._base = end
        self.sent += len(packets)
        return packets

    def _encode(self, base: int, end: int) -> tuple[bytes, int]:
        """One feedback packet from ``base``; returns it and the first number it left out
        (at MAX_STATUS numbers, or where a receive delta would not fit 16 bits)."""
        arrivals = self._arrivals
        first = next(arrivals[s] for s in range(base, end) if s in arrivals)
        reference = first // REFERENCE_US
        previous = reference * REFERENCE_US
        symbols: list[int] = []
        deltas = bytearray()
        seq = base
        while seq < end and len(symbols) < MAX_STATUS:
            arrival = arrivals.get(seq)
            if arrival is None:
                symbols.append(0)  # not received
            else:
                delta = (arrival - previous) // DELTA_US
                if 0 <= delta <= 0xFF:
                    symbols.append(1)  # small delta, one byte
                    deltas.append(delta)
                elif -0x8000 <= delta <= 0x7FFF:
                    symbols.append(2)  # large or negative delta, two bytes
                    deltas += struct.pack("!h", delta)
                else:
                    break  # too far from the previous one: the next packet starts here
                previous += delta * DELTA_US
            seq += 1
        # trailing numbers that did not arrive are left for the next feedback's base
        while symbols and symbols[-1] == 0:
            symbols.pop()
            seq -= 1
        chunks = bytearray()
        for i in range(0, len(symbols), 7):  # status vector chunks of seven 2-bit symbols
            word = 0xC000
            for j, symbol in enumerate(symbols[i : i + 7]):
                word |= symbol << (12 - 2 * j)
            chunks += struct.pack("!H", word)
        body_len = _FIXED.size + len(chunks) + len(deltas)
        pad = -body_len % 4
        header = 0x80 | 15 | (0x20 if pad else 0)
        packet = bytearray(
            _FIXED.pack(
                header,
                205,
                (body_len + pad) // 4 - 1,
                self.sender_ssrc,
                self.media_ssrc,
                base & 0xFFFF,
                len(symbols),
                ((reference & 0xFFFFFF) << 8) | (self._count & 0xFF),
            )
        )
        packet += chunks
        packet += deltas
        if pad:
            packet += bytes(pad - 1) + bytes((pad,))
        self._count += 1
        return bytes(packet), seq
