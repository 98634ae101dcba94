"""The adaptive-stream and dynacast messages of the signalling WebSocket, with aiortc
peers: ``view`` sets the SFU's preferences of the subscriber's video (an invisible one
gets no video packets, its audio goes on), bad views are refused; ``layers-needed``
reaches the publisher only, ``video-paused``/``video-resumed`` the subscriber only."""

from __future__ import annotations

import asyncio
from typing import Any

from ws_peers import (
    RED,
    config,  # noqa: F401  (loopback ICE for the app under test)
    connect,
    publish,
    subscribe,
)

from vtp.appkeys import SFU_KEY
from vtp.sfu import events
from vtp.sfu.downconnection import DownConnection


async def test_view_hides_and_sizes_a_subscribers_video(client: Any, accounts: Any) -> None:
    teacher = await accounts.with_role("teacher")
    student = await accounts.with_role("student")
    a = await connect(client, teacher["access_token"])
    b = await connect(client, student["access_token"])
    joined_a = await a.request("join", "joined", room="adaptive-1")
    joined_b = await b.request("join", "joined", room="adaptive-1")
    pub_pc, stream_id = await publish(a, RED)
    await b.wait("stream-added", stream_id=stream_id)
    viewer, sub_id = await subscribe(b, stream_id)
    await viewer.wait_frames(10)
    room = client.app[SFU_KEY].get_room("adaptive-1")
    conn = room.peers[joined_b["peer_id"]].connections[sub_id]
    assert isinstance(conn, DownConnection)
    video = next(d for d in conn.tracks if d.kind == "video")
    audio = next(d for d in conn.tracks if d.kind == "audio")
    try:
        # bad views are refused, and change nothing
        await b.send(
            type="view",
            views=[{"subscription_id": sub_id, "width": -1, "height": 10, "visible": True}],
        )
        await b.error("validation_error")
        await b.send(type="view", views=[])
        await b.error("validation_error")
        await b.send(
            type="view",
            views=[
                {"subscription_id": sub_id, "width": 1, "height": 1, "visible": True, "fps": 500}
            ],
        )
        await b.error("validation_error")
        await b.send(
            type="view",
            views=[{"subscription_id": "nope", "width": 1, "height": 1, "visible": True}],
        )
        await b.error("not_found")
        await a.send(
            type="view",
            views=[{"subscription_id": sub_id, "width": 1, "height": 1, "visible": False}],
        )
        await a.error("not_found")  # not A's subscription
        assert video.visible

        # hidden: no more video packets, audio goes on; no reply
        await b.send(
            type="view",
            views=[{"subscription_id": sub_id, "width": 320, "height": 180, "visible": False}],
        )
        await b.wait("video-paused", subscription_id=sub_id, reason="hidden")
        assert (video.max_width, video.max_height, video.visible) == (320, 180, False)
        await asyncio.sleep(0.3)
        v0, a0 = video.packets, audio.packets
        await asyncio.sleep(1.0)
        assert video.packets == v0 and audio.packets > a0 + 20
        # shown again: video comes back (from a keyframe)
        frames = len(viewer.frames)
        await b.send(
            type="view",
            views=[
                {
                    "subscription_id": sub_id,
                    "width": 640,
                    "height": 360,
                    "visible": True,
                    "fps": 15,
                }
            ],
        )
        await b.wait("video-resumed", subscription_id=sub_id, stream_id=stream_id)
        await viewer.wait_frames(frames + 10)
        assert video.visible and video.max_width == 640 and video.max_fps == 15
        # (a view is answered only when it fails: the four errors above, nothing else)
        assert len([m for m in b.seen if m["type"] == "error"]) == 4

        # dynacast reaches the publisher, and only it
        up = room.publication(stream_id)
        track_id = up.tracks[1].id if up.tracks[1].kind == "video" else up.tracks[0].id
        room.emit(
            events.LayersNeeded("adaptive-1", joined_a["peer_id"], stream_id, track_id, ("q", "h"))
        )
        needed = await a.wait("layers-needed", stream_id=stream_id)
        assert needed == {
            "type": "layers-needed",
            "stream_id": stream_id,
            "track_id": track_id,
            "rids": ["q", "h"],
        }
        room.emit(
            events.TrackPaused(
                "adaptive-1", joined_b["peer_id"], sub_id, stream_id, track_id, "bandwidth"
            )
        )
        await b.wait("video-paused", subscription_id=sub_id, reason="bandwidth")
        await asyncio.sleep(0.2)
        assert not [m for m in b.seen if m["type"] == "layers-needed"]
        assert not [m for m in a.seen if m["type"] in ("video-paused", "video-resumed")]
    finally:
        await viewer.close()
        await pub_pc.close()
        await a.close()
        await b.close()
