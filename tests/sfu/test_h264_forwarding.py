"""H.264 through the SFU between real aiortc peers (aiortc encodes and decodes H.264 with
PyAV): forwarded without transcoding to subscribers that decode it, refused clearly to
one that cannot."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from aiortc import RTCRtpSender, RTCSessionDescription

from tests.sfu.clients import EventLog, Publisher, Subscriber
from tests.support.media import colour_matches
from tests.support.waiting import eventually
from vtp.sfu import Sfu, SfuError, events


def only(mime_type: str) -> list[object]:
    return [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == mime_type]


def h264_publisher(index: int) -> Publisher:
    pub = Publisher(index)
    for transceiver in pub.pc.getTransceivers():
        if transceiver.kind == "video":
            transceiver.setCodecPreferences(only("video/H264"))  # type: ignore[arg-type]
    return pub


def good_frames(sub: Subscriber, pub: Publisher) -> list[int]:
    return [n for (_, n, u, v) in sub.video().frames if colour_matches((u, v), pub.colour)]


async def test_h264_publisher_reaches_aiortc_subscribers(sfu: Sfu, event_log: EventLog) -> None:
    room = sfu.room("h264")
    pub = h264_publisher(1)
    stream_id = await pub.publish(room.join("obs"))
    assert "H264/90000" in pub.pc.remoteDescription.sdp
    assert "VP8" not in pub.pc.remoteDescription.sdp
    await event_log.wait_for(lambda e: isinstance(e, events.StreamAdded))
    offered, whep = Subscriber(), Subscriber()
    try:
        # the server offers the stream's codec ...
        await offered.subscribe(room.join("a"), stream_id)
        offer = offered.pc.remoteDescription.sdp
        assert "H264/90000" in offer and "packetization-mode=1" in offer and "VP8" not in offer
        # ... and answers a subscriber's offer with it
        whep.pc.addTransceiver("video", direction="recvonly")
        whep.pc.addTransceiver("audio", direction="recvonly")
        await whep.pc.setLocalDescription(await whep.pc.createOffer())
        conn = await room.join("b").subscribe_answer(stream_id, whep.pc.localDescription.sdp)
        assert "H264/90000" in conn.answer_sdp and "VP8" not in conn.answer_sdp
        await whep.pc.setRemoteDescription(RTCSessionDescription(conn.answer_sdp, "answer"))
        subs = (offered, whep)
        await eventually(lambda: all(len(good_frames(s, pub)) >= 20 for s in subs), 20)
        for sub in subs:
            counters = good_frames(sub, pub)
            assert sum(1 for a, b in itertools.pairwise(counters) if b > a) >= 17
        up = room.publication(stream_id)
        assert up is not None
        video = next(t for t in up.tracks if t.kind == "video")
        assert video.mime_type == "video/h264" and video.keyframes >= 1
        # a subscriber that decodes VP8 only: a clear error, the room untouched
        vp8_only = Subscriber()
        try:
            tr = vp8_only.pc.addTransceiver("video", direction="recvonly")
            tr.setCodecPreferences(only("video/VP8"))  # type: ignore[arg-type]
            await vp8_only.pc.setLocalDescription(await vp8_only.pc.createOffer())
            viewer = room.join("vp8-only")
            with pytest.raises(SfuError, match="video/h264"):
                await viewer.subscribe(stream_id, offer_sdp=vp8_only.pc.localDescription.sdp)
            assert viewer.connections == {}
        finally:
            await vp8_only.close()
        # the server offers H.264 and the answer does not accept it: the same, and the
        # subscription is closed
        viewer = room.join("vp8-answer")
        sub = await viewer.subscribe(stream_id)
        answering = Subscriber()
        try:
            answer = await answering.accept(sub.offer_sdp)
            with pytest.raises(SfuError, match="does not decode this stream's video codec"):
                await viewer.answer(sub.id, answer.replace("H264/90000", "VP8/90000"))
        finally:
            await answering.close()
        await eventually(lambda: viewer.connections == {}, 5)
        before = len(whep.video().frames)
        await eventually(lambda: len(whep.video().frames) >= before + 10, 5)
    finally:
        await asyncio.gather(pub.close(), *(s.close() for s in (offered, whep)))
