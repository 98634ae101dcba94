"""RTCP through the SFU with real peers: NACK recovery on both legs, sender reports,
REMB to the publisher."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from tests.sfu.clients import EventLog, Publisher, Subscriber, watch_incoming_rtp
from tests.support.waiting import eventually
from vtp.sfu import Sfu, rtcp
from vtp.sfu import aiortc_hooks as hooks
from vtp.sfu.downconnection import DownConnection
from vtp.sfu.downtrack import DownTrack
from vtp.sfu.room import Room
from vtp.sfu.upconnection import UpConnection


def video_down(room: Room, peer_id: str, sub_id: str) -> DownTrack:
    conn = room.peers[peer_id].connections[sub_id]
    assert isinstance(conn, DownConnection)
    return next(d for d in conn.tracks if d.kind == "video")


def missing_counters(counters: list[int]) -> int:
    """Frames the subscriber never decoded between its first and last one."""
    if not counters:
        return 1 << 30
    return (max(counters) - min(counters) + 1) - len(set(counters))


async def test_subscriber_loss_is_repaired_from_the_cache(sfu: Sfu, event_log: EventLog) -> None:
    room = sfu.room("nack-down")
    pub = Publisher(0, audio=False)
    stream_id = await pub.publish(room.join("teacher"))
    sub = Subscriber()
    try:
        sub_id = await sub.subscribe(room.join("student"), stream_id)
        await eventually(lambda: len(sub.video().frames) >= 5, 10)
        down = video_down(room, "student", sub_id)
        dropped: set[int] = set()

        def lossy(ssrc: int, seq: int, ts: int) -> bool:
            if ssrc == down.ssrc and seq % 4 == 1 and seq not in dropped:
                dropped.add(seq)  # every 4th packet's first copy is lost on the way
                return False
            return True

        watch_incoming_rtp(sub.pc, lossy)
        start = len(sub.video().frames)
        await asyncio.sleep(3.0)
        counters = [n for (_, n, _, _) in sub.video().frames[start:]]
        assert len(dropped) > 20
        assert down.retransmitted >= len(dropped) * 0.8, (down.retransmitted, len(dropped))
        assert len(counters) >= 60
        assert missing_counters(counters) <= 2, "lost packets were not recovered"
    finally:
        await asyncio.gather(pub.close(), sub.close())


async def test_publisher_loss_is_nacked_upstream(sfu: Sfu, event_log: EventLog) -> None:
    room = sfu.room("nack-up")
    pub = Publisher(1, audio=False)
    teacher = room.join("teacher")
    stream_id = await pub.publish(teacher)
    sub = Subscriber()
    try:
        await sub.subscribe(room.join("student"), stream_id)
        await eventually(lambda: len(sub.video().frames) >= 5, 10)
        up = teacher.connections[stream_id]
        assert isinstance(up, UpConnection)
        # drop datagrams before SRTP (the RTP header is in clear): a packet dropped after
        # decryption would make the retransmission an SRTP replay
        ice = hooks.dtls_transports(up.pc)[0].transport._connection
        real_receive: Callable[[bytes, int], None] = ice.data_received
        dropped: set[int] = set()

        def lossy(data: bytes, component: int) -> None:
            if len(data) > 12 and 128 <= data[0] < 192 and not 192 <= data[1] <= 223:
                seq = int.from_bytes(data[2:4], "big")
                if seq % 5 == 2 and seq not in dropped:
                    dropped.add(seq)
                    return
            real_receive(data, component)

        ice.data_received = lossy
        start = len(sub.video().frames)
        await asyncio.sleep(3.0)
        track = up.tracks[0]
        counters = [n for (_, n, _, _) in sub.video().frames[start:]]
        assert len(dropped) > 15
        assert track.nacks_sent >= len(dropped) * 0.8
        assert track.nacks_answered >= len(dropped) * 0.8, (track.nacks_answered, len(dropped))
        assert missing_counters(counters) <= 2
    finally:
        await asyncio.gather(pub.close(), sub.close())


async def test_sender_reports_are_rewritten_per_subscriber(sfu: Sfu, event_log: EventLog) -> None:
    room = sfu.room("sr")
    pub = Publisher(2)
    stream_id = await pub.publish(room.join("teacher"))
    sub = Subscriber()
    try:
        sub_id = await sub.subscribe(room.join("student"), stream_id)
        await eventually(lambda: len(sub.video().frames) >= 5, 10)
        down = video_down(room, "student", sub_id)
        reports: list[tuple[float, rtcp.SenderReport, int, int]] = []
        real_rtcp: Callable[[bytes], int] = down._send_rtcp
        last_ts = [0]

        def watch_rtp(ssrc: int, seq: int, ts: int) -> bool:
            if ssrc == down.ssrc:
                last_ts[0] = ts
            return True

        def watch_rtcp(data: bytes) -> int:
            for packet in rtcp.parse_rtcp(data):
                if isinstance(packet, rtcp.SenderReport):
                    reports.append((time.time(), packet, down.packets, last_ts[0]))
            return real_rtcp(data)

        watch_incoming_rtp(sub.pc, watch_rtp)
        down._send_rtcp = watch_rtcp
        await eventually(lambda: len(reports) >= 2, 6)
        for wall, sr, packets, ts in reports:
            assert sr.ssrc == down.ssrc
            assert sr.packets == packets > 0
            # NTP time of the SR is "now" (publisher clock = same host)
            ntp_s = sr.ntp / (1 << 32) - 2208988800
            assert abs(ntp_s - wall) < 1.0
            # its RTP time is in this subscriber's timestamp space: near the last packet's
            delta = ((sr.rtp_ts - ts + (1 << 31)) % (1 << 32)) - (1 << 31)
            assert abs(delta) < 0.5 * 90000, delta
        # the subscriber's aiortc receiver took them as the sender's reports
        stats = await sub.pc.getStats()
        remote = [s for s in stats.values() if s.type == "remote-outbound-rtp"]
        assert any(getattr(s, "packetsSent", 0) > 0 for s in remote)
    finally:
        await asyncio.gather(pub.close(), sub.close())


async def test_remb_reaches_the_publisher(sfu: Sfu, event_log: EventLog) -> None:
    room = sfu.room("remb")
    pub = Publisher(3, audio=False)
    teacher = room.join("teacher")
    stream_id = await pub.publish(teacher)
    # what the publisher receives (test-only look at the client's transport)
    client_dtls = pub.pc.getTransceivers()[0].receiver.transport
    real_rtcp = client_dtls._handle_rtcp_data
    rembs: list[rtcp.Remb] = []

    async def watch(data: bytes) -> None:
        rembs.extend(p for p in rtcp.parse_rtcp(data) if isinstance(p, rtcp.Remb))
        await real_rtcp(data)

    client_dtls._handle_rtcp_data = watch  # type: ignore[method-assign]
    sub = Subscriber()
    try:
        sub_id = await sub.subscribe(room.join("student"), stream_id)
        await eventually(lambda: len(sub.video().frames) >= 5, 10)
        down = video_down(room, "student", sub_id)
        up = teacher.connections[stream_id]
        assert isinstance(up, UpConnection)
        track = up.tracks[0]
        # the aiortc subscriber estimates from our abs-send-time stamps and sends REMB
        await eventually(lambda: down.estimate.remb > 0, 8)
        computed: list[int] = []
        subscriber_can_take: list[int] = []
        real_bitrate = track.bitrate_for_publisher

        def record(now: float) -> int:
            value = real_bitrate(now)
            computed.append(value)
            subscriber_can_take.append(down.estimate.value(now, probing=True))
            return value

        track.bitrate_for_publisher = record  # type: ignore[method-assign]
        rembs.clear()
        await asyncio.sleep(2.0)
        # about one REMB every 500 ms, for the publisher's video SSRC
        assert 3 <= len(rembs) <= 6
        assert all(r.ssrcs == (track.ssrc,) for r in rembs)
        # carrying what the subscriber can take
        assert [r.bitrate for r in rembs][-len(computed) :] == [
            c >> max(0, c.bit_length() - 18) << max(0, c.bit_length() - 18) for c in computed
        ][-len(rembs) :]
        # (one subscriber: its estimate, which its REMB bounds while it shows congestion)
        assert computed == subscriber_can_take
        # and the publisher's encoder follows it (aiortc clamps to 250 kbps..1.5 Mbps)
        sender = next(s for s in pub.pc.getSenders() if s.kind == "video")

        def encoder_bitrate() -> Any:
            encoder = sender._RTCRtpSender__encoder  # type: ignore[attr-defined]
            return encoder.target_bitrate if encoder else None

        last = rembs[-1].bitrate
        assert encoder_bitrate() in {max(250_000, min(r.bitrate, 1_500_000)) for r in rembs}
        assert last > 0
    finally:
        await asyncio.gather(pub.close(), sub.close())


def test_subscriber_rtcp_reaches_the_down_track_it_names() -> None:
    """The subscriber's RTCP table: every packet type its down tracks act on is routed by
    SSRC to the right one; SSRCs it does not send are ignored."""
    calls: list[tuple[str, int, object]] = []

    class Down:
        def __init__(self, ssrc: int) -> None:
            self.ssrc = ssrc

        def on_nack(self, lost: tuple[int, ...]) -> None:
            calls.append(("nack", self.ssrc, lost))

        def on_keyframe_request(self) -> None:
            calls.append(("keyframe", self.ssrc, None))

        def on_remb(self, bitrate: int) -> None:
            calls.append(("remb", self.ssrc, bitrate))

        def on_report(self, block: rtcp.ReportBlock) -> None:
            calls.append(("report", self.ssrc, block.fraction_lost))

    a, b = Down(111), Down(222)
    conn = SimpleNamespace(
        _by_ssrc={111: a, 222: b},
        _note_reception=lambda down, highest: calls.append(("noted", down.ssrc, highest)),
    )
    fir = struct.pack("!BBHII", 0x80 | 4, 206, 4, 9, 0) + struct.pack("!IB3x", 222, 1)
    block = rtcp.ReportBlock(111, 25, 3, 70000, 5, 0, 0)
    data = (
        rtcp.build_rr(9, [block, rtcp.ReportBlock(333, 1, 1, 1, 1, 0, 0)])
        + rtcp.build_nack(9, 222, [7, 8])
        + rtcp.build_pli(9, 111)
        + rtcp.build_pli(9, 333)
        + fir
        + rtcp.build_remb(9, 800_000, [111, 222, 333])
        + rtcp.build_bye([9])
    )
    DownConnection.receive_rtcp(conn, data)  # type: ignore[arg-type]
    assert calls == [
        ("report", 111, 25),
        ("noted", 111, 70000),
        ("nack", 222, (7, 8)),
        ("keyframe", 111, None),
        ("keyframe", 222, None),
        ("remb", 111, 800_000),
        ("remb", 222, 800_000),
    ]
