"""Transport-wide congestion control feedback, decoded by an independent reading of
draft-holmer-rmcat-transport-wide-cc-extensions-01 (section 3.1)."""

from __future__ import annotations

import struct

from vtp.sfu import negotiation
from vtp.sfu.rtp import URI_TRANSPORT_CC, parse_rtp
from vtp.sfu.twcc import DELTA_US, MAX_STATUS, REFERENCE_US, TransportFeedback


def decode(packet: bytes) -> tuple[int, int, dict[int, int | None], int]:
    """(media SSRC, feedback count, {16-bit seq: arrival µs or None}, reference µs)."""
    assert len(packet) % 4 == 0
    b0, pt, length = struct.unpack_from("!BBH", packet)
    assert b0 >> 6 == 2 and b0 & 0x1F == 15 and pt == 205
    assert (length + 1) * 4 == len(packet)
    end = len(packet) - (packet[-1] if b0 & 0x20 else 0)
    _, media, base, count, ref_fb = struct.unpack_from("!IIHHI", packet, 4)
    reference = ref_fb >> 8
    if reference & 0x800000:
        reference -= 1 << 24
    symbols: list[int] = []
    i = 20
    while len(symbols) < count:
        (chunk,) = struct.unpack_from("!H", packet, i)
        i += 2
        if not chunk & 0x8000:  # run length
            symbols += [(chunk >> 13) & 3] * (chunk & 0x1FFF)
        elif chunk & 0x4000:  # seven 2-bit symbols
            symbols += [(chunk >> (12 - 2 * j)) & 3 for j in range(7)]
        else:  # fourteen 1-bit symbols
            symbols += [(chunk >> (13 - j)) & 1 for j in range(14)]
    symbols = symbols[:count]
    at = reference * REFERENCE_US
    out: dict[int, int | None] = {}
    for n, symbol in enumerate(symbols):
        seq = (base + n) & 0xFFFF
        if symbol == 0:
            out[seq] = None
            continue
        if symbol == 1:
            delta = packet[i]
            i += 1
        else:
            assert symbol == 2
            (delta,) = struct.unpack_from("!h", packet, i)
            i += 2
        at += delta * DELTA_US
        out[seq] = at
    assert i <= end and not any(packet[i:end])
    return media, ref_fb & 0xFF, out, reference


def test_feedback_reports_arrivals_losses_and_times() -> None:
    fb = TransportFeedback(sender_ssrc=7)
    times = {100: 1_000_000, 101: 1_001_000, 103: 1_020_000, 104: 1_019_000, 105: 1_500_000}
    for seq, t in times.items():
        fb.record(seq, 0xABC, t)
    [packet] = fb.build()
    media, count, report, _ = decode(packet)
    assert media == 0xABC and count == 0
    assert report[102] is None  # never arrived
    for seq, t in times.items():
        got = report[seq]
        assert got is not None and abs(got - t) < DELTA_US, (seq, got, t)
    assert fb.build() == []  # nothing new
    # the next feedback starts after the last one; a late 102 is not reported again
    fb.record(102, 0xABC, 1_600_000)
    fb.record(106, 0xABC, 1_601_000)
    [packet] = fb.build()
    _, count, report, _ = decode(packet)
    assert count == 1 and list(report) == [106]


def test_wraparound_long_runs_and_far_apart_arrivals() -> None:
    fb = TransportFeedback(1)
    seqs = [(65_500 + i) & 0xFFFF for i in range(MAX_STATUS + 50)]
    for n, seq in enumerate(seqs):
        fb.record(seq, 1, 5_000_000 + n * 300)
    fb.record((seqs[-1] + 1) & 0xFFFF, 1, 5_000_000 + 20_000_000)  # 20 s later
    packets = fb.build()
    assert len(packets) == 3  # MAX_STATUS per packet, then a delta that cannot be coded
    merged: dict[int, int | None] = {}
    for packet in packets:
        merged.update(decode(packet)[2])
    assert len(merged) == len(seqs) + 1 and all(v is not None for v in merged.values())
    got = merged[(seqs[-1] + 1) & 0xFFFF]
    assert got is not None and abs(got - 25_000_000) < DELTA_US


def test_a_restart_of_the_numbering_starts_over() -> None:
    fb = TransportFeedback(1)
    fb.record(10, 1, 1000)
    fb.record(40_000, 1, 2000)  # far away: the sender restarted
    [packet] = fb.build()
    assert list(decode(packet)[2]) == [40_000]


def test_parse_reads_the_transport_wide_sequence_number() -> None:
    ext = struct.pack("!HH", 0xBEDE, 1) + bytes([0x51, 0x12, 0x34, 0x00])
    data = struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + ext + b"\x10\x00"
    parsed = parse_rtp(data, audio_level_id=0, mid_id=0, twcc_id=5)
    assert parsed is not None and parsed.twcc == 0x1234
    unnumbered = parse_rtp(data, audio_level_id=0, mid_id=0, twcc_id=0)
    assert unnumbered is not None and unnumbered.twcc == -1


OFFER = """v=0
o=- 1 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
m=video 9 UDP/TLS/RTP/SAVPF 96 97
c=IN IP4 0.0.0.0
a=mid:0
a=sendonly
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=fingerprint:sha-256 00:11
a=setup:actpass
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:9 urn:ietf:params:rtp-hdrext:toffset
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 transport-cc
a=rtcp-fb:96 nack
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
"""


def test_transport_cc_is_kept_in_offers_and_accepted_in_answers() -> None:
    offer = negotiation.sanitize_offer(OFFER)
    text = offer.text()
    assert URI_TRANSPORT_CC in text and "toffset" not in text and "rtx" not in text
    assert negotiation.transport_cc_id(offer) == 3
    answer = OFFER.replace("a=sendonly", "a=recvonly").replace(
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\n",
        "",
    )
    accepted = negotiation.add_transport_cc(answer, 3)
    assert f"a=extmap:3 {URI_TRANSPORT_CC}" in accepted
    assert "a=rtcp-fb:96 transport-cc" in accepted
    assert negotiation.add_transport_cc(accepted, 3) == accepted
    # without the feedback line in the offer, the extension alone is not taken up
    plain = negotiation.sanitize_offer(OFFER.replace("a=rtcp-fb:96 transport-cc\n", ""))
    assert negotiation.transport_cc_id(plain) == 0
    # subscribers' (WHEP) offers keep to what the down leg does
    receive = negotiation.sanitize_receive_offer(OFFER.replace("a=sendonly", "a=recvonly"))
    assert URI_TRANSPORT_CC not in receive.text()
