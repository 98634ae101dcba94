"""Unit tests of the SFU's pure modules: RTP/RTCP wire formats, sequence continuity,
SDP filtering, TURN credentials, speaker detection, estimates."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from typing import Any

import pytest
from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, RtcpRtpfbPacket, RtcpSrPacket, unpack_remb_fci

from vtp.config import load_config
from vtp.sfu import SfuError, negotiation, rtcp
from vtp.sfu.estimator import MAX_BITRATE, MIN_BITRATE, DownEstimate, combine
from vtp.sfu.ice import IceSettings, turn_credential
from vtp.sfu.packetcache import PacketCache
from vtp.sfu.rtp import parse_rtp, vp8_keyframe_start
from vtp.sfu.seqmap import Unwrapper
from vtp.sfu.speaker import LevelMeter, SpeakerDetector


def test_rtcp_built_packets_parse_in_aiortc_and_back() -> None:
    sr = rtcp.build_sr(0x11223344, 0x0102030405060708, 12345, 10, 2000)
    (parsed,) = RtcpPacket.parse(sr)
    assert isinstance(parsed, RtcpSrPacket)
    assert parsed.ssrc == 0x11223344 and parsed.sender_info.rtp_timestamp == 12345
    assert parsed.sender_info.packet_count == 10 and parsed.sender_info.octet_count == 2000
    nack = rtcp.build_nack(1, 2, [65535, 0, 1, 5, 40])
    (pn,) = RtcpPacket.parse(nack)
    assert isinstance(pn, RtcpRtpfbPacket)
    assert sorted(x & 0xFFFF for x in pn.lost) == [0, 1, 5, 40, 65535]
    remb = rtcp.build_remb(7, 1_234_567, [8, 9])
    (pr,) = RtcpPacket.parse(remb)
    assert isinstance(pr, RtcpPsfbPacket)
    bitrate, ssrcs = unpack_remb_fci(pr.fci)
    assert ssrcs == [8, 9] and abs(bitrate - 1_234_567) < 1_234_567 / 1000
    pli = rtcp.build_pli(3, 4)
    compound = sr + nack + remb + pli + rtcp.build_bye([5])
    ours = rtcp.parse_rtcp(compound)
    assert [type(p).__name__ for p in ours] == ["SenderReport", "Nack", "Remb", "Pli", "Bye"]
    assert ours[1].lost == (0, 1, 5, 40, 65535)  # type: ignore[union-attr]
    block = rtcp.ReportBlock(9, 25, -3, 70000, 12, 34, 56)
    rr = rtcp.parse_rtcp(rtcp.build_rr(1, [block]))
    assert rr == [rtcp.ReceiverReport(1, (block,))]


def test_rtcp_parse_survives_garbage() -> None:
    good = rtcp.build_pli(1, 2)
    assert rtcp.parse_rtcp(good + b"\x80\xce\xff\xff") == [rtcp.Pli(1, 2)]
    lying_remb = struct.pack("!BBHII", 0x8F, 206, 4, 1, 0) + b"REMB" + bytes([200, 0, 0, 1])
    assert rtcp.parse_rtcp(lying_remb) == []
    for n in range(0, 40):
        rtcp.parse_rtcp(bytes(range(n)))  # never raises


def test_unwrapper_wraps_reorders_and_rebases() -> None:
    u = Unwrapper(16, max_forward=3000, max_back=1000)
    assert u.map(65534) == 65534
    assert u.map(65535) == 65535
    assert u.map(0) == 65536  # wrap
    assert u.map(65533) == 65533  # late packet from before the wrap
    assert u.map(2) == 65538
    assert u.map(40000) == 65539  # hostile jump: continues by one
    assert u.rebases == 1
    assert u.map(40001) == 65540
    assert u.to_wire(65540) == 40001
    assert u.map(39999) == 65538  # small reorder in the new base
    assert u.map(30000) == 65541  # too far back: treated as a reset, continues


def test_packet_cache() -> None:
    class P:
        def __init__(self, fseq: int) -> None:
            self.fseq = fseq

    cache: PacketCache[P] = PacketCache(8)
    for i in range(20):
        cache.add(P(i))
    assert cache.get(19) is not None and cache.get(12) is not None
    assert cache.get(11) is None and 3 not in cache
    with pytest.raises(ValueError):
        PacketCache(6)


def _rtp(ext: bytes = b"", payload: bytes = b"\x10\x00\x9d", pad: int = 0) -> bytes:
    b0 = 0x80 | (0x10 if ext else 0) | (0x20 if pad else 0)
    tail = bytes(pad - 1) + bytes([pad]) if pad else b""
    return struct.pack("!BBHII", b0, 0x80 | 97, 7, 9000, 42) + ext + payload + tail


def test_parse_rtp_extensions_and_padding() -> None:
    ext = struct.pack("!HH", 0xBEDE, 2) + bytes([0x10, 0x85, 0x40, ord("7"), 0, 0, 0, 0])
    p = parse_rtp(_rtp(ext, pad=4), audio_level_id=1, mid_id=4)
    assert p is not None
    assert (p.payload_type, p.marker, p.seq16, p.ts, p.ssrc) == (97, 0x80, 7, 9000, 42)
    assert p.audio_level == 0x85 and p.mid == b"7" and p.payload == b"\x10\x00\x9d"
    padding = parse_rtp(_rtp(payload=b"", pad=4), 1, 4)  # padding only: kept, empty
    assert padding is not None and padding.payload == b""
    assert parse_rtp(_rtp(ext[:6]), 1, 4) is None  # extension runs past the end
    assert parse_rtp(b"\x40" + _rtp()[1:], 1, 4) is None  # RTP version 1


def test_vp8_keyframe_detection() -> None:
    key = bytes([0x10, 0x00, 0x9D, 0x01, 0x2A])  # S=1, PID=0, P=0
    assert vp8_keyframe_start(key)
    assert not vp8_keyframe_start(bytes([0x10, 0x01]))  # P=1: interframe
    assert not vp8_keyframe_start(bytes([0x00, 0x00]))  # not a partition start
    # with X, I (15-bit picture id), L and T/K bytes
    assert vp8_keyframe_start(bytes([0x90, 0xE0, 0x80, 0x01, 0x05, 0x20, 0x00]))
    assert not vp8_keyframe_start(bytes([0x90, 0xE0, 0x80]))


def test_sanitize_offer_keeps_vp8_and_opus_only() -> None:
    offer = "\r\n".join(
        [
            "v=0",
            "o=- 1 1 IN IP4 0.0.0.0",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0",
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99",
            "c=IN IP4 0.0.0.0",
            "a=mid:0",
            "a=sendonly",
            "a=ice-ufrag:abcd",
            "a=ice-pwd:abcdefghijklmnopqrstuv",
            "a=fingerprint:sha-256 AA:BB",
            "a=setup:actpass",
            "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=extmap:5 urn:ietf:params:rtp-hdrext:toffset",
            "a=rtpmap:96 VP8/90000",
            "a=rtcp-fb:96 nack",
            "a=rtpmap:97 rtx/90000",
            "a=fmtp:97 apt=96",
            "a=rtpmap:98 H264/90000",
            "a=fmtp:98 profile-level-id=42e01f",
            "a=rtpmap:99 red/90000",
            "a=ssrc-group:FID 1 2",
            "a=ssrc:1 cname:x",
            "a=ssrc:2 cname:x",
        ]
    )
    sdp = negotiation.sanitize_offer(offer)
    text = sdp.text()
    assert "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" in text
    for gone in ("rtx", "H264", "red", "toffset", "ssrc-group", "apt=96"):
        assert gone not in text
    assert "a=rtcp-fb:96 nack" in text and "sdes:mid" in text
    assert sdp.media[0].ssrcs == [1, 2] and sdp.media[0].mid == "0"
    # without VP8: H.264 only in packetization-mode 1 (98 is mode 0 here), else VP9
    vp9 = negotiation.sanitize_offer(offer.replace("VP8", "VP9")).media[0]
    assert vp9.codec is not None and vp9.codec.mime_type == "video/vp9"
    assert "a=rtpmap:96 VP8/90000" in vp9.lines  # aiortc's stand-in
    with pytest.raises(SfuError):
        negotiation.sanitize_offer(offer.replace("VP8", "AV1"))


def test_add_opus_fec() -> None:
    text = "\r\n".join(
        [
            "v=0",
            "o=- 1 1 IN IP4 0.0.0.0",
            "s=-",
            "t=0 0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=mid:0",
            "a=ice-ufrag:abcd",
            "a=ice-pwd:abcdefghijklmnopqrstuv",
            "a=fingerprint:sha-256 AA",
            "a=rtpmap:111 opus/48000/2",
            "a=fmtp:111 minptime=20",
        ]
    )
    out = negotiation.add_opus_fec(text)
    assert "a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1" in out and "minptime=20" not in out


def test_add_bitrate_hints() -> None:
    lines = [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuv",
        "a=fingerprint:sha-256 AA",
        "a=rtpmap:111 opus/48000/2",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "a=mid:1",
        "a=rtpmap:96 VP8/90000",
        "a=rtpmap:97 VP8/90000",
        "a=fmtp:97 max-fr=30",
    ]
    out = negotiation.add_bitrate_hints("\r\n".join(lines), 2000)
    hints = "x-google-start-bitrate=2000"
    assert f"a=rtpmap:96 VP8/90000\r\na=fmtp:96 {hints}\r\n" in out
    assert f"a=fmtp:97 max-fr=30;{hints}" in out
    assert "a=fmtp:111" not in out  # audio untouched
    assert negotiation.add_bitrate_hints(out, 2000) == out


def test_turn_rest_credentials() -> None:
    cred = turn_credential("s3cret", "alice", ttl_s=3600, now=1_000_000)
    assert cred.username == "1003600:alice" and cred.expires_at == 1_003_600
    digest = hmac.new(b"s3cret", b"1003600:alice", hashlib.sha1).digest()
    assert cred.credential == base64.b64encode(digest).decode()
    settings = IceSettings.from_config(
        load_config(
            stun_urls=["stun:stun.example.org:3478"],
            turn_urls=["turn:turn.example.org:3478?transport=udp"],
            turn_secret="s3cret",
        )
    )
    servers = settings.client_ice_servers("bob", now=0)
    assert servers[0] == {"urls": ["stun:stun.example.org:3478"]}
    assert servers[1]["username"] == f"{settings.turn_credential_ttl_s}:bob"
    # no STUN server at all by default, for clients or for the server itself
    default = IceSettings.from_config(load_config())
    assert default.client_ice_servers("x") == []
    assert default.server_configuration().iceServers == []


def test_speaker_detection_with_hysteresis() -> None:
    changes: list[str | None] = []
    detector = SpeakerDetector(changes.append)
    detector.update({"a": 10.0, "b": 5.0})  # nobody above the threshold
    assert changes == []
    detector.update({"a": 90.0, "b": 80.0})
    assert changes == ["a"]
    detector.update({"a": 90.0, "b": 93.0})  # not louder by the hysteresis margin
    assert changes == ["a"]
    detector.update({"a": 60.0, "b": 93.0})  # a fell below the threshold
    assert changes == ["a", "b"]
    meter = LevelMeter()
    meter.add(0x80 | 10)  # voice bit set, -10 dBov
    meter.add(30)
    meter.add(127)  # silence: not voiced
    assert meter.take() == ((117 + 97 + 0) / 3, 2 / 3) and meter.take() == (0.0, 0.0)


def test_down_estimate_and_combine() -> None:
    estimate = DownEstimate(MAX_BITRATE)  # (a single-layer publisher's subscriber)
    start = estimate.value(0.0)
    estimate.on_loss(0.3)
    assert estimate.value(0.0) < start
    lossy = estimate.value(0.0)
    # probing (a publisher's REMB, a layer choice): a REMB that merely follows what the
    # subscriber receives (a receive-side estimator never goes far above it) is no ceiling
    assert not estimate.on_remb(1_000_000, now=10.0, sending_bps=900_000)
    assert not estimate.on_remb(1_400_000, now=11.0, sending_bps=950_000)
    assert estimate.value(11.5, probing=True) == lossy
    assert estimate.value(11.5) == 1_400_000  # (not probing: a plain ceiling)
    # a REMB that falls with the rate sent (a simpler picture) is not congestion
    assert not estimate.on_remb(1_000_000, now=12.0, sending_bps=600_000)
    assert estimate.value(12.5, probing=True) == lossy
    # one that falls below what is sent is: it caps for a while and pulls the
    # loss-based estimate down with it (which then grows back with clean reports)
    assert estimate.on_remb(400_000, now=13.0, sending_bps=900_000)
    assert estimate.value(13.5, probing=True) == 400_000
    estimate.on_loss(0.0)
    assert estimate.value(16.0, probing=True) == int(400_000 * 1.08)
    assert estimate.value(100.0) == int(400_000 * 1.08)  # stale REMB ignored
    assert combine([900_000, 300_000]) == 300_000
    assert combine([1]) == MIN_BITRATE


def _video_track(sent: list[bytes]) -> Any:
    from vtp.sfu.uptrack import UpTrack

    def send(data: bytes) -> int:
        sent.append(data)
        return len(data)

    return UpTrack("t", "video", "video/vp8", 90000, 96, "0", 1234, send, 99)


def test_keyframe_requests_are_coalesced_rate_limited_and_deferred(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import vtp.sfu.uptrack as uptrack

    now = [1000.0]
    monkeypatch.setattr(uptrack.time, "monotonic", lambda: now[0])
    sent: list[bytes] = []
    track = _video_track(sent)
    track.request_keyframe()
    assert [rtcp.parse_rtcp(d) for d in sent] == [[rtcp.Pli(99, 1234)]]
    now[0] += 0.3
    track.request_keyframe()  # too soon: deferred...
    track.request_keyframe()  # ...and coalesced
    track.tick(now[0])
    assert len(sent) == 1
    now[0] += 0.8  # 1.1 s after the first PLI
    track.tick(now[0])
    assert len(sent) == 2  # ...but not dropped
    # no keyframe came: repeated once a second, given up after 10 s
    for _ in range(200):
        now[0] += 0.1
        track.tick(now[0])
    assert 9 <= len(sent) <= 11
    before = len(sent)
    now[0] += 5
    track.tick(now[0])
    assert len(sent) == before  # nothing pending: nothing sent
    # a keyframe arriving satisfies a pending request
    now[0] += 0.2
    track.request_keyframe()
    now[0] += 0.1
    track.request_keyframe()
    keyframe = struct.pack("!BBHII", 0x80, 96, 1, 0, 1234) + bytes([0x10, 0x00, 0x9D, 0x01])
    p = parse_rtp(keyframe, 0, 0)
    assert p is not None
    track.receive(p)
    now[0] += 2
    track.tick(now[0])
    assert len(sent) == before + 1 and track.keyframes == 1  # one PLI, then satisfied


def test_up_track_nacks_its_own_gaps(monkeypatch: pytest.MonkeyPatch) -> None:
    import vtp.sfu.uptrack as uptrack

    now = [50.0]
    monkeypatch.setattr(uptrack.time, "monotonic", lambda: now[0])
    sent: list[bytes] = []
    track = _video_track(sent)
    for seq in (10, 11, 14, 15):
        data = struct.pack("!BBHII", 0x80, 96, seq, 0, 1234) + b"\x10\x00\x01"
        p = parse_rtp(data, 0, 0)
        assert p is not None
        track.receive(p)
    track.tick(now[0])
    nacks = [p for d in sent for p in rtcp.parse_rtcp(d) if isinstance(p, rtcp.Nack)]
    assert nacks == [rtcp.Nack(99, 1234, (12, 13))]
    # the retransmission of 12 arrives; 13 is asked again, then given up on
    late = parse_rtp(struct.pack("!BBHII", 0x80, 96, 12, 0, 1234) + b"\x10\x00\x01", 0, 0)
    assert late is not None
    track.receive(late)
    assert track.nacks_answered == 1
    for _ in range(5):
        now[0] += 0.1
        track.tick(now[0])
    asked = [p.lost for d in sent for p in rtcp.parse_rtcp(d) if isinstance(p, rtcp.Nack)]
    assert asked[1:] == [(13,), (13,)] and not track.missing


def test_dropped_packets_leave_no_hole_in_the_forwarded_numbering() -> None:
    sent: list[bytes] = []
    track = _video_track(sent)
    seen: list[int] = []
    track.add_tap(lambda t, packet: seen.append(packet.fseq))

    def packet(seq: int, payload: bytes, pt: int = 96, pad: bool = False) -> Any:
        b0 = 0xA0 if pad else 0x80
        tail = b"\x00\x00\x00\x04" if pad else b""
        p = parse_rtp(struct.pack("!BBHII", b0, pt, seq, 0, 1234) + payload + tail, 0, 0)
        assert p is not None
        return p

    frame = b"\x10\x00\x01"
    track.receive(packet(100, frame))
    track.receive(packet(101, b"", pad=True))  # padding-only probe
    track.receive(packet(102, frame))
    track.receive(packet(103, b"\x10"))  # too short for VP8
    track.discard(packet(104, frame, pt=111))  # payload type not negotiated
    track.receive(packet(106, frame))  # 105 lost...
    track.receive(packet(105, frame))  # ...and arriving late
    track.receive(packet(107, frame))
    track.receive(packet(101, b"", pad=True))  # a duplicate of a skipped one
    assert seen == [100, 101, 103, 102, 104]
    assert track.dropped == 4 and track.duplicates == 1
    track.receive(packet(110, frame))  # 108, 109 lost
    track.receive(packet(109, b"", pad=True))  # late padding: below what was forwarded
    track.receive(packet(111, frame))
    assert seen[-2:] == [107, 108]  # the numbering never goes back
    # NACKs from subscribers (forwarded numbering) map back to the publisher's numbers
    assert [track.fseqs.pseq(f) for f in (100, 101, 102, 103, 104)] == [100, 102, 105, 106, 107]
    assert list(track.missing) == [108]  # only the real loss is NACKed


def test_a_numbering_jump_leaves_no_hole() -> None:
    track = _video_track([])
    seen: list[int] = []
    track.add_tap(lambda t, packet: seen.append(packet.fseq))
    for seq in (10, 11, 14, 40000, 40001, 15):  # 12, 13 lost, then a jump, then back
        p = parse_rtp(struct.pack("!BBHII", 0x80, 96, seq, 0, 1234) + b"\x10\x00\x01", 0, 0)
        assert p is not None
        track.receive(p)
    # 12 and 13 can never be recovered once the numbering jumped: skipped, not holes
    assert seen == [10, 11, 14, 15, 16, 17]
    assert not track.missing


def test_a_muted_track_withholds_and_video_resumes_at_a_keyframe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import vtp.sfu.uptrack as uptrack

    now = [10.0]
    monkeypatch.setattr(uptrack.time, "monotonic", lambda: now[0])
    sent: list[bytes] = []
    track = _video_track(sent)
    seen: list[tuple[int, bool]] = []
    track.add_tap(lambda t, packet: seen.append((packet.fseq, packet.keyframe)))
    delta = b"\x10\x01\x01"  # (VP8 payload header P bit set: an interframe)
    key = bytes([0x10, 0x00, 0x9D, 0x01])

    def packet(seq: int, payload: bytes) -> Any:
        p = parse_rtp(struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, 1234) + payload, 0, 0)
        assert p is not None
        return p

    track.receive(packet(1, key))
    track.receive(packet(2, delta))
    track.set_muted(True)
    for seq in range(3, 8):
        track.receive(packet(seq, delta))
    assert [s for s, _ in seen] == [1, 2] and track.withheld == 5
    plis_before = track.plis_sent
    now[0] += 2
    track.set_muted(False)
    assert track.plis_sent == plis_before + 1  # a keyframe is asked for at once...
    track.receive(packet(8, delta))  # ...and nothing before it is forwarded
    track.receive(packet(9, key))
    track.receive(packet(10, delta))
    # the withheld packets leave no hole: subscribers see 3, 4, 5 right after 2
    assert seen == [(1, True), (2, False), (3, True), (4, False)]
    assert track.withheld == 6 and not track.missing
    block = track.report_block(0.0)
    assert block is not None and block.packets_lost == 0  # the publisher is told nothing was lost
