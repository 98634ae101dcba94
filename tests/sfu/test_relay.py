"""A cascade's relay leg inside the SFU: an origin's subscription answered by an edge's
relay peer, whose publication then fans out on the edge. The origin shares one port
(ICE-lite), so the edge's relay side must be a full ICE agent; the edge's subscribers
decode the origin's publisher, and their keyframe requests reach that publisher."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator

import pytest

from tests.sfu.clients import Publisher, Subscriber
from tests.sfu.running import running_sfu
from tests.sfu.test_forwarding import good_frames
from tests.support.waiting import eventually
from vtp.config import Config, load_config
from vtp.sfu import Sfu, SfuError, UpConnection
from vtp.sfu import aiortc_hooks as hooks
from vtp.sfu.uptrack import KEYFRAME_INTERVAL_S, UpTrack


async def ask_keyframe(sub: Subscriber) -> None:
    """The subscriber's client sends a PLI for the video it receives (as a decoder
    that lost its reference would)."""
    sdp = sub.pc.remoteDescription.sdp
    video = sdp[sdp.index("m=video") :]
    ssrc = int(video.split("a=ssrc:", 1)[1].split()[0])
    for receiver in sub.pc.getReceivers():
        if receiver.track is not None and receiver.track.kind == "video":
            await receiver._send_rtcp_pli(ssrc)


def _sfu_config() -> Config:
    return load_config(ice_addresses=["127.0.0.1"], ice_udp_port=0, peer_timeout_s=5)


@pytest.fixture
async def origin() -> AsyncIterator[Sfu]:
    async with running_sfu(_sfu_config()) as sfu:
        yield sfu


@pytest.fixture
async def edge() -> AsyncIterator[Sfu]:
    async with running_sfu(_sfu_config()) as sfu:
        yield sfu


def settled(track: UpTrack) -> bool:
    """No keyframe request pending, and the next one may go at once."""
    return not track._kf_pending and time.monotonic() - track._last_pli > KEYFRAME_INTERVAL_S


def drop_every(up: UpConnection, ssrc: int | None, nth: int) -> None:
    """Lose every ``nth`` RTP packet of ``ssrc`` on its way into ``up`` (the one-port
    mux hands datagrams to the ICE connection's data_received)."""
    connection = hooks.dtls_transports(up.pc)[0].transport._connection
    deliver = connection.data_received
    seen = [0]

    def data_received(data: bytes, arrival: int) -> None:
        rtp = len(data) >= 12 and 128 <= data[0] < 192 and not 192 <= data[1] <= 223
        if rtp and int.from_bytes(data[8:12], "big") == ssrc:
            seen[0] += 1
            if seen[0] % nth == 0:
                return
        deliver(data, arrival)

    connection.data_received = data_received


async def sub_frames(sub: Subscriber, pub: Publisher, more: int) -> None:
    target = len(good_frames(sub, pub)) + more
    await eventually(lambda: len(good_frames(sub, pub)) >= target, 15)


def _plis_to_publishers(sfu: Sfu) -> int:
    return sfu.totals().get("up_plis_sent", 0)


def plis_above(sfu: Sfu, count: int) -> bool:
    return _plis_to_publishers(sfu) > count


async def test_an_edge_forwards_what_the_origin_relays(origin: Sfu, edge: Sfu) -> None:
    room_a = origin.room("lecture")
    pub = Publisher(0)
    stream_id = await pub.publish(room_a.join("teacher"), label="cam")
    room_b = edge.room("lecture")
    room_b.origin = "node-a"
    relay_a = room_a.join("cascade-node-b", relay=True)
    relay_b = room_b.join("teacher", "Teacher", relay=True)
    subs: list[Subscriber] = []
    try:
        sub_a = await relay_a.subscribe(stream_id)
        # both nodes serve clients on one ICE-lite port: the origin's end of the relay is
        # a full agent (it checks and nominates), the edge's is on its usual port
        assert "a=ice-lite" not in sub_a.offer_sdp
        up_b = await relay_b.publish(sub_a.offer_sdp, label="cam")
        assert "a=ice-lite" in up_b.answer_sdp
        await relay_a.answer(sub_a.id, up_b.answer_sdp)
        await eventually(lambda: [s.id for s in room_b.streams()] == [up_b.id], 15)
        # only relay peers publish in a relayed room
        with pytest.raises(SfuError) as refused:
            await room_b.join("student-x").publish(await Publisher(1).offer())
        assert refused.value.code == "relayed-room"

        views = []
        for i in range(2):
            sub = Subscriber()
            subs.append(sub)
            peer = room_b.join(f"student{i}")
            views.append((peer, await sub.subscribe(peer, up_b.id)))
        await eventually(lambda: all(len(good_frames(s, pub)) >= 20 for s in subs), 20)
        assert all(s.received["audio"].audio_frames > 10 for s in subs)

        # what the edge asks the origin for: its subscribers' views merged
        video_b = next(t for t in up_b.tracks if t.kind == "video")
        assert room_b.view_needed(up_b.id, video_b.id) == (0, 0, True)
        (p0, s0), (p1, s1) = views
        p0.set_preferences(s0, video_b.id, 320, 180)
        p1.set_preferences(s1, video_b.id, 640, 360)
        assert room_b.view_needed(up_b.id, video_b.id) == (640, 360, True)
        p1.set_preferences(s1, video_b.id, visible=False)
        assert room_b.view_needed(up_b.id, video_b.id) == (320, 180, True)
        p0.set_preferences(s0, video_b.id, visible=False)
        assert room_b.view_needed(up_b.id, video_b.id) == (0, 0, False)
        for peer, sub_id in views:
            peer.set_preferences(sub_id, video_b.id)
        # one copy crosses the relay: the origin forwards to one subscription
        assert len([c for c in relay_a.connections.values()]) == 1

        # a keyframe request of an edge subscriber reaches the origin's publisher (each
        # time: once the previous request is served and the once-a-second limit allows)
        origin_up = room_a.publication(stream_id)
        assert origin_up is not None
        video_a = next(t for t in origin_up.tracks if t.kind == "video")
        for _ in range(2):
            await eventually(lambda: settled(video_a) and settled(video_b), 10)
            before = _plis_to_publishers(origin)
            for sub in subs:
                await ask_keyframe(sub)
            await eventually(functools.partial(plis_above, origin, before), 5)

        # packets lost on the relay: the edge asks the origin, which resends from its
        # cache; the edge's subscribers go on decoding
        relay_down = next(d for d in sub_a.tracks if d.kind == "video")
        drop_every(up_b, video_b.ssrc, 25)
        await eventually(lambda: relay_down.retransmitted >= 3 and video_b.nacks_sent >= 3, 10)
        for sub in subs:
            await sub_frames(sub, pub, 20)
        assert relay_down.nacks_received >= 3

        # the origin's stream ends: the edge's relayed stream ends with it
        await pub.close()
        await room_a.publication(stream_id).close()  # type: ignore[union-attr]
        await eventually(lambda: not room_b.streams(), 15)
    finally:
        for sub in subs:
            await sub.close()
        await pub.close()
