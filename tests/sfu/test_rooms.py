"""Rooms and peers: leaving, failures, hostile input, vanished peers, grace period,
active speaker. One peer's trouble never stops the others' media."""

from __future__ import annotations

import asyncio
import os
import re
import struct
import time

import pytest

from tests.sfu.clients import EventLog, Publisher, Subscriber, watch_incoming_rtp
from tests.support.waiting import eventually
from vtp.config import load_config
from vtp.sfu import Sfu, SfuError, events, fastpath, rtcp
from vtp.sfu import aiortc_hooks as hooks
from vtp.sfu.downconnection import DownConnection
from vtp.sfu.upconnection import UpConnection


def frames_now(sub: Subscriber) -> int:
    return len(sub.video().frames)


async def still_forwarding(sub: Subscriber, more: int = 10, within: float = 5.0) -> None:
    start = frames_now(sub)
    await eventually(lambda: frames_now(sub) >= start + more, within)


async def test_publisher_leaving_ends_subscriber_tracks(sfu: Sfu, event_log: EventLog) -> None:
    room = sfu.room("leaving")
    teacher = room.join("teacher")
    pub = Publisher(0)
    stream_id = await pub.publish(teacher)
    student = room.join("student")
    sub = Subscriber()
    other_pub = Publisher(1, audio=False)
    other_sub = Subscriber()
    try:
        sub_id = await sub.subscribe(student, stream_id)
        other_id = await other_pub.publish(room.join("other"))
        await other_sub.subscribe(room.join("watcher"), other_id)
        await eventually(lambda: frames_now(sub) >= 5 and frames_now(other_sub) >= 5, 10)

        server_pcs = [c.pc for c in teacher.connections.values()] + [
            c.pc for c in student.connections.values()
        ]
        await teacher.leave()
        await eventually(lambda: sub.video().ended and sub.received["audio"].ended, 5)
        # the publication's and the subscription's server sockets are released
        await eventually(
            lambda: all(
                hooks.ice_connection_open_sockets(d) == 0
                for pc in server_pcs
                for d in hooks.dtls_transports(pc)
            ),
            5,
        )
        assert "teacher" not in room.peers
        assert room.publication(stream_id) is None
        removed = event_log.of(events.TrackRemoved)
        assert {e.kind for e in removed if e.stream_id == stream_id} == {"audio", "video"}
        assert event_log.of(events.StreamRemoved)[0].stream_id == stream_id
        await event_log.wait_for(
            lambda e: isinstance(e, events.SubscriptionClosed) and e.subscription_id == sub_id
        )
        assert sub_id not in student.connections
        assert any(
            isinstance(e, events.PeerLeft) and e.peer_id == "teacher" for e in event_log.events
        )
        # the other stream is untouched
        await still_forwarding(other_sub)
    finally:
        await asyncio.gather(pub.close(), sub.close(), other_pub.close(), other_sub.close())


async def test_client_closing_its_publication(sfu: Sfu, event_log: EventLog) -> None:
    room = sfu.room("client-close")
    pub = Publisher(2, audio=False)
    stream_id = await pub.publish(room.join("teacher"))
    sub = Subscriber()
    try:
        await sub.subscribe(room.join("student"), stream_id)
        await eventually(lambda: frames_now(sub) >= 5, 10)
        await pub.close()  # DTLS close_notify
        await eventually(lambda: sub.video().ended, 5)
        await event_log.wait_for(lambda e: isinstance(e, events.StreamRemoved), 5)
    finally:
        await asyncio.gather(pub.close(), sub.close())


MALFORMED = [
    "",
    "garbage",
    "v=0\r\nm=video\r\n",
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n",
    "v=0\r\nthis is not sdp\r\n",
    "x" * 100_000,
]


async def test_malformed_sdp_is_refused_while_the_room_forwards(
    sfu: Sfu, event_log: EventLog
) -> None:
    room = sfu.room("malformed")
    pub = Publisher(3, audio=False)
    stream_id = await pub.publish(room.join("teacher"))
    sub = Subscriber()
    try:
        await sub.subscribe(room.join("student"), stream_id)
        await eventually(lambda: frames_now(sub) >= 5, 10)
        mallory = room.join("mallory")
        good = await Publisher(4).offer()
        broken = [
            *MALFORMED,
            good.replace("a=fingerprint:", "a=fingerprin:"),
            good.replace("VP8/90000", "H264/90000").replace("opus/48000/2", "PCMU/8000"),
            good.replace("a=sendrecv", "a=recvonly"),
            re.sub(r"m=video \d+ ", "m=video ", good),
            good.replace("a=mid:0", "a=mid:0\r\na=mid:0").replace("a=mid:1", "a=mid:0"),
            good.replace("a=setup:actpass", "a=setup:bogus"),
            good.replace("a=ice-pwd:", "a=ice-pwx:"),
            "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n"
            "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\n"
            "a=fingerprint:sha-256 00\r\n",
        ]
        for text in broken:
            with pytest.raises(SfuError) as info:
                await mallory.publish(text)
                raise AssertionError(f"accepted #{broken.index(text)}")
            assert info.value.code in ("bad-sdp", "bad-request")
        for text in ["v=0", "v=0\r\ngarbage\r\n", good.replace("a=sendrecv", "a=sendonly")]:
            with pytest.raises(SfuError):  # WHEP: the client's offer refused
                await mallory.subscribe(stream_id, offer_sdp=text)
        # A refusal names no connection: no event about one the client was never given
        # (a connection-state "closed" for it used to precede the bad_sdp reply).
        assert [type(e) for e in event_log.events if getattr(e, "peer_id", "") == "mallory"] == [
            events.PeerJoined
        ]
        assert mallory.connections == {}
        # answers too
        sub_conn = await mallory.subscribe(stream_id)
        for candidate in ["candidate:garbage", "candidate:1 1 udp 1 1.2.3.4 99999 typ host"]:
            with pytest.raises(SfuError) as info:
                await mallory.add_ice_candidate(sub_conn.id, candidate)
            assert info.value.code == "bad-candidate"
        with pytest.raises(SfuError) as info:  # a flood of candidates is cut off
            for i in range(100):
                await mallory.add_ice_candidate(
                    sub_conn.id, f"candidate:{i} 1 udp 1 192.0.2.1 {1000 + i} typ host", "0"
                )
        assert info.value.code == "bad-candidate" and i == 32
        for text in ["", "v=0\r\ngarbage\r\n", good]:
            with pytest.raises(SfuError):
                await mallory.answer(sub_conn.id, text)
        with pytest.raises(SfuError):
            await mallory.answer("no-such-subscription", good)
        with pytest.raises(SfuError):
            await mallory.subscribe("no-such-stream")
        # no connection leaked by the refusals: an answer aiortc refused closed its
        # subscription, the rest never opened one
        assert mallory.connections == {}
        assert sub_conn.closed and sub_conn.pc.connectionState == "closed"
        await still_forwarding(sub)
        assert len(room.streams()) == 1
    finally:
        await asyncio.gather(pub.close(), sub.close())


def _rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, b0: int = 0x80) -> bytes:
    return struct.pack("!BBHII", b0, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


async def test_hostile_packets_do_not_break_subscribers(sfu: Sfu, event_log: EventLog) -> None:
    room = sfu.room("hostile")
    teacher = room.join("teacher")
    pub = Publisher(5, audio=False)
    stream_id = await pub.publish(teacher)
    sub = Subscriber()
    try:
        sub_id = await sub.subscribe(room.join("student"), stream_id)
        await eventually(lambda: frames_now(sub) >= 5, 10)
        up = teacher.connections[stream_id]
        assert isinstance(up, UpConnection)
        track = up.tracks[0]
        assert track.ssrc is not None
        down_conn = room.peers["student"].connections[sub_id]
        assert isinstance(down_conn, DownConnection)
        down = down_conn.tracks[0]
        out_seqs: list[int] = []

        def watch(ssrc: int, seq: int, ts: int) -> bool:
            if ssrc == down.ssrc:
                out_seqs.append(seq)
            return True

        watch_incoming_rtp(sub.pc, watch)
        pt = track.payload_type
        seq = track.pseqs.to_wire(track.pseqs.highest)
        hostile = [
            b"",
            b"\x80",
            os.urandom(11),
            os.urandom(1200),
            _rtp(pt, seq + 1, 0, track.ssrc, b"")[:-1],
            _rtp(pt, seq + 2, 0, track.ssrc, b"\x10"),  # one-byte VP8 payload
            _rtp(pt + 1, seq + 3, 0, track.ssrc, b"\x10\x00" * 50),  # not negotiated
            _rtp(pt, seq + 4, 0, track.ssrc, b"\x10\x00\x00\x05", b0=0xA0),  # padding lies
            _rtp(pt, seq + 5, 0, track.ssrc, b"\xbe\xde\xff\xff" + b"\x10" * 8, b0=0x90),
            _rtp(pt, seq + 6, 0, track.ssrc, b"\xbe\xde\x00\x01\x1f\x00\x00\x00", b0=0x90),
            _rtp(pt, seq + 7, 0, track.ssrc, b"", b0=0x8F),  # 15 CSRCs, none present
            _rtp(pt, seq + 8, 0, 0xDEADBEEF, b"\x10\x00" * 50),  # unknown SSRC
        ]
        for data in hostile:
            up._rtp_in(data, 0)
        # a correctly formed packet with a huge sequence and timestamp jump
        up._rtp_in(_rtp(pt, seq + 30000, 0x7FFFFFFF, track.ssrc, b"\x00\x00\x00\x00"), 0)
        # hostile RTCP from the subscriber side and the publisher side
        bad_rtcp = [
            b"",
            os.urandom(3),
            os.urandom(64),
            struct.pack("!BBH", 0x8F, 206, 4) + struct.pack("!II", 1, 0) + b"REMB" + b"\xff" * 4,
            struct.pack("!BBH", 0x81, 205, 0xFFFF),
            rtcp.build_nack(1, down.ssrc, list(range(0, 65536, 100))),
            rtcp.build_remb(1, 1, [down.ssrc]),
            struct.pack("!BBH", 0x9F, 201, 1) + b"\x00" * 4,
            struct.pack("!BBH", 0x80, 200, 1) + b"\x00" * 4,
        ]
        for data in bad_rtcp:
            down_conn._rtcp_in(data)
            up._rtcp_in(data)
        before = down.packets
        try:
            # More frames than the continuity check below needs: with one packet per
            # frame, waiting for exactly 20 could leave exactly 20 numbers to compare.
            await still_forwarding(sub, more=25)
        except AssertionError:
            raise AssertionError(
                f"{track.stats()} sent {down.packets - before} {out_seqs[-30:]}"
            ) from None
        # what the subscriber got stayed continuous despite the jump
        # (retransmissions answering the hostile NACK repeat older numbers: compare sets)
        rel = {((q - out_seqs[0] + 0x8000) & 0xFFFF) - 0x8000 for q in out_seqs}
        assert len(rel) > 20 and max(rel) - min(rel) + 1 == len(rel), "sequence gap or jump"
        assert track.dropped >= 2  # one-byte VP8, payload type not negotiated
        assert up.unrouted >= 8  # the malformed ones and the unknown SSRC
        assert up.state == "connected" and down_conn.state == "connected"
    finally:
        await asyncio.gather(pub.close(), sub.close())


async def test_vanished_peer_is_removed_and_released() -> None:
    # (a port per connection: the aioice sockets released are this test's measure)
    sfu = Sfu(
        load_config(
            ice_addresses=["127.0.0.1"], ice_udp_port=None, peer_timeout_s=4, room_grace_s=0
        )
    )
    await sfu.start()
    log = EventLog()
    sfu.add_listener(log)
    room = sfu.room("vanish")
    pub = Publisher(0, audio=False)
    teacher = room.join("teacher")
    stream_id = await pub.publish(teacher)
    sub = Subscriber()
    try:
        await sub.subscribe(room.join("student"), stream_id)
        await eventually(lambda: frames_now(sub) >= 5, 10)
        up = teacher.connections[stream_id]
        server_dtls = hooks.dtls_transports(up.pc)[0]
        assert hooks.ice_connection_open_sockets(server_dtls) == 1
        # the publisher's machine disappears: its sockets close without a word
        for transceiver in pub.pc.getTransceivers():
            for protocol in transceiver.receiver.transport.transport._connection._protocols:
                protocol.transport.close()
        gone = time.monotonic()
        await log.wait_for(lambda e: isinstance(e, events.PeerLeft) and e.peer_id == "teacher", 6)
        assert time.monotonic() - gone < 4.5  # peer_timeout_s (+ scheduling slack)
        await eventually(lambda: sub.video().ended, 5)
        assert up.closed
        await eventually(lambda: hooks.ice_connection_open_sockets(server_dtls) == 0, 3)
    finally:
        await asyncio.gather(pub.close(), sub.close())
        await sfu.close()


async def test_room_closes_after_grace_period(sfu: Sfu, event_log: EventLog) -> None:
    room = sfu.room("grace")
    peer = room.join("alone")
    await peer.leave()
    assert sfu.get_room("grace") is room
    await event_log.wait_for(lambda e: isinstance(e, events.RoomClosed) and e.room == "grace", 4)
    assert sfu.get_room("grace") is None
    # a peer joining during the grace period keeps the room
    room2 = sfu.room("kept")
    await room2.join("a").leave()
    room2.join("b")
    await asyncio.sleep(2.0)
    assert sfu.get_room("kept") is room2


async def test_active_speaker(sfu: Sfu, event_log: EventLog) -> None:
    room = sfu.room("speaker")
    quiet = Publisher(0, video=False, loud=False)
    loud = Publisher(1, video=False, loud=True)
    try:
        await quiet.publish(room.join("quiet"))
        await loud.publish(room.join("loud"))
        event = await event_log.wait_for(lambda e: isinstance(e, events.ActiveSpeaker), 5)
        assert event.peer_id == "loud"
        assert room.speaker.current == "loud"
        assert not [e for e in event_log.of(events.ActiveSpeaker) if e.peer_id == "quiet"]
    finally:
        await asyncio.gather(quiet.close(), loud.close())


async def test_duplicate_peer_and_bad_names(sfu: Sfu) -> None:
    room = sfu.room("names")
    room.join("a")
    with pytest.raises(SfuError):
        room.join("a")
    with pytest.raises(SfuError):
        sfu.room("")
    with pytest.raises(SfuError):
        room.join("x" * 500)


async def test_forwarding_within_a_port_range() -> None:
    sfu = Sfu(
        load_config(
            ice_addresses=["127.0.0.1"], ice_udp_port=None, ice_port_min=47200, ice_port_max=47209
        )
    )
    await sfu.start()
    room = sfu.room("ports")
    pub = Publisher(4, audio=False)
    sub = Subscriber()
    try:
        stream_id = await pub.publish(room.join("teacher"))
        await sub.subscribe(room.join("student"), stream_id)
        await eventually(lambda: frames_now(sub) >= 5, 10)
        for sdp in (pub.pc.remoteDescription.sdp, sub.pc.remoteDescription.sdp):
            ports = [int(ln.split()[5]) for ln in sdp.splitlines() if "candidate:" in ln]
            assert ports and all(47200 <= p <= 47209 for p in ports)
    finally:
        await asyncio.gather(pub.close(), sub.close())
        await sfu.close()


async def test_a_failing_subscriber_does_not_stop_the_others(sfu: Sfu, event_log: EventLog) -> None:
    room = sfu.room("isolation")
    pub = Publisher(1, audio=False)
    stream_id = await pub.publish(room.join("teacher"))
    subs = [Subscriber(), Subscriber(), Subscriber()]
    try:
        ids = [await s.subscribe(room.join(f"s{i}"), stream_id) for i, s in enumerate(subs)]
        await eventually(lambda: all(frames_now(s) >= 5 for s in subs), 10)
        unreachable = room.peers["s0"].connections[ids[0]]
        broken = room.peers["s1"].connections[ids[1]]
        assert isinstance(broken, DownConnection) and isinstance(unreachable, DownConnection)
        # s0: the kernel refuses every datagram to it (broadcast without SO_BROADCAST)
        assert unreachable.sender is not None
        sink = unreachable.sender.sink
        assert fastpath.aim_sink(sink, sink.fd, "255.255.255.255", 9)
        # s1: its down track raises when the up track hands it a packet
        down = broken.tracks[0]

        def explode(*args: object) -> None:
            raise RuntimeError("boom")

        down.write = explode  # type: ignore[method-assign]
        down.restart()  # back to the Python path (waiting for a keyframe)
        # the subscriber after them in the fan-out still gets every packet
        await still_forwarding(subs[2], more=15)
        await event_log.wait_for(
            lambda e: isinstance(e, events.SubscriptionClosed) and e.subscription_id == ids[1]
        )
        assert broken.closed and broken.close_reason == "internal error"
        assert unreachable.sender.send_errors > 10 and not unreachable.closed
        await still_forwarding(subs[2], more=15)
    finally:
        await asyncio.gather(pub.close(), *(s.close() for s in subs))
