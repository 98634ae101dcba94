"""Real aiortc peers on loopback through the SFU: content, fan-out, late joiners."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from aiortc import RTCSessionDescription

from tests.sfu.clients import EventLog, Publisher, Subscriber
from tests.support.media import colour_matches
from tests.support.waiting import eventually
from vtp.sfu import Sfu, SfuError, events


def good_frames(sub: Subscriber, pub: Publisher) -> list[int]:
    return [n for (_, n, u, v) in sub.video().frames if colour_matches((u, v), pub.colour)]


async def test_one_publisher_five_subscribers(sfu: Sfu, event_log: EventLog) -> None:
    room = sfu.room("lecture")
    teacher = room.join("teacher")
    pub = Publisher(0)
    stream_id = await pub.publish(teacher)
    await event_log.wait_for(lambda e: isinstance(e, events.StreamAdded))
    subs = [Subscriber() for _ in range(5)]
    try:
        for i, sub in enumerate(subs):
            await sub.subscribe(room.join(f"student{i}"), stream_id)
        await eventually(lambda: all(len(s.video().frames) >= 30 for s in subs), 15)
        for sub in subs:
            counters = good_frames(sub, pub)
            assert len(counters) >= 25, "frames must carry the publisher's colour"
            # the counter drawn by the publisher increases frame after frame
            increasing = sum(1 for a, b in itertools.pairwise(counters) if b > a)
            assert increasing >= len(counters) - 3
            assert max(counters) <= pub.video.count if pub.video else False
            assert sub.received["audio"].audio_frames > 0
        # Opus in-band FEC negotiated on both legs
        assert "useinbandfec=1" in pub.pc.remoteDescription.sdp
        assert all("useinbandfec=1" in s.pc.remoteDescription.sdp for s in subs)
        stats = room.stats()
        assert stats["streams"]
        up_stats = room.publication(stream_id).stats()  # type: ignore[union-attr]
        video = next(t for t in up_stats["tracks"] if t["kind"] == "video")  # type: ignore[union-attr,index]
        assert video["subscribers"] == 5
        assert video["forwarded"] >= 5 * 30
    finally:
        await asyncio.gather(pub.close(), *(s.close() for s in subs))


async def test_three_by_three_all_to_all(sfu: Sfu, event_log: EventLog) -> None:
    room = sfu.room("seminar")
    peers = [room.join(f"p{i}") for i in range(3)]
    pubs = [Publisher(i, audio=(i == 0)) for i in range(3)]
    ids = [await pub.publish(peer) for pub, peer in zip(pubs, peers, strict=True)]
    await eventually(lambda: len(room.streams()) == 3)
    subs: dict[tuple[int, int], Subscriber] = {}
    try:
        for i, peer in enumerate(peers):
            for j, stream_id in enumerate(ids):
                sub = Subscriber()
                await sub.subscribe(peer, stream_id)
                subs[(i, j)] = sub
        await eventually(lambda: all(len(s.video().frames) >= 15 for s in subs.values()), 20)
        for (_i, j), sub in subs.items():
            frames = sub.video().frames
            right = good_frames(sub, pubs[j])
            assert len(right) >= len(frames) - 2, f"subscriber of {j} saw another colour"
    finally:
        await asyncio.gather(*(p.close() for p in pubs), *(s.close() for s in subs.values()))


async def test_late_joiner_decodes_within_a_second(sfu: Sfu, event_log: EventLog) -> None:
    room = sfu.room("late")
    pub = Publisher(1, audio=False)
    stream_id = await pub.publish(room.join("teacher"))
    early = Subscriber()
    late = Subscriber()
    try:
        await early.subscribe(room.join("early"), stream_id)
        await eventually(lambda: len(early.video().frames) > 0, 10)
        # long after the publisher's first keyframe (aiortc sends one every 3000 frames)
        await asyncio.sleep(2.0)
        joined = asyncio.get_running_loop().time()
        await late.subscribe(room.join("late"), stream_id)
        await eventually(lambda: late.video().frames, 5)
        first = late.video().frames[0][0]
        assert first - joined < 1.0, f"first frame after {first - joined:.2f}s"
        assert colour_matches(late.video().frames[0][2:], pub.colour)
    finally:
        await asyncio.gather(pub.close(), early.close(), late.close())


async def test_trickled_candidates(sfu: Sfu, event_log: EventLog) -> None:
    """An offer without candidates, the candidates added afterwards (browser trickle)."""
    room = sfu.room("trickle")
    teacher = room.join("teacher")
    pub = Publisher(2, audio=False)
    sub = Subscriber()
    try:
        offer = await pub.offer()
        lines = offer.splitlines()
        candidates = [ln[2:] for ln in lines if ln.startswith("a=candidate:")]
        assert candidates
        bare = "\r\n".join(ln for ln in lines if not ln.startswith(("a=candidate:", "a=end-of")))
        publication = await teacher.publish(bare + "\r\n")
        await pub.pc.setRemoteDescription(
            RTCSessionDescription(sdp=publication.answer_sdp, type="answer")
        )
        for candidate in candidates:
            await teacher.add_ice_candidate(publication.id, candidate, sdp_mid="0")
        await teacher.add_ice_candidate(publication.id, None, sdp_mid="0")
        # the server's ICE agent holds them (not only peer-reflexive ones from checks)
        ice = publication.pc.getTransceivers()[0].receiver.transport.transport
        remote = {(c.ip, c.port) for c in ice.getRemoteCandidates()}
        wanted = {(c.split()[4], int(c.split()[5])) for c in candidates}
        assert wanted <= remote
        await event_log.wait_for(lambda e: isinstance(e, events.StreamAdded), 10)
        await sub.subscribe(room.join("student"), publication.id)
        await eventually(lambda: len(good_frames(sub, pub)) >= 10, 10)
    finally:
        await asyncio.gather(pub.close(), sub.close())


async def test_subscriber_offers_whep_style(sfu: Sfu, event_log: EventLog) -> None:
    """The client offers recvonly (WHEP egress) and the server answers with the stream."""
    room = sfu.room("whep")
    pub = Publisher(3)
    stream_id = await pub.publish(room.join("teacher"))
    sub = Subscriber()
    try:
        sub.pc.addTransceiver("video", direction="recvonly")
        sub.pc.addTransceiver("audio", direction="recvonly")
        await sub.pc.setLocalDescription(await sub.pc.createOffer())
        conn = await room.join("viewer").subscribe_answer(stream_id, sub.pc.localDescription.sdp)
        assert "a=sendonly" in conn.answer_sdp and "useinbandfec=1" in conn.answer_sdp
        await sub.pc.setRemoteDescription(RTCSessionDescription(conn.answer_sdp, "answer"))
        await eventually(lambda: len(good_frames(sub, pub)) >= 10, 10)
        await eventually(lambda: sub.received["audio"].audio_frames > 10, 5)
        # a sendonly "subscribe" offer is refused
        sending = (await Publisher(0).offer()).replace("a=sendrecv", "a=sendonly")
        wrong = room.join("wrong")
        with pytest.raises(SfuError):
            await wrong.subscribe(stream_id, offer_sdp=sending)
        assert wrong.connections == {}
    finally:
        await asyncio.gather(pub.close(), sub.close())
