"""What crosses a cascade is what the edge's subscribers show: two nodes (in-process apps
sharing real PostgreSQL and Redis) with VTP_CASCADE_PEERS=1. A viewer served from node
B's copy of a room placed on node A: until it subscribes, A sends B none of the teacher's
video (A's relay subscription's video is paused as hidden); once it subscribes and shows
it, the video crosses and the viewer decodes it; once it hides it, the video stops
crossing again."""

from __future__ import annotations

from typing import Any

from helpers import Accounts
from sfu_api.ws_peers import BLUE, assert_frames_show, connect, publish, subscribe
from two_nodes import two_nodes

from tests.support.waiting import eventually
from vtp.appkeys import NODES, SFU_KEY
from vtp.config import Config
from vtp.sfu.downconnection import DownConnection
from vtp.sfu.downtrack import DownTrack


def _relayed_video(origin: Any, room: str, edge_id: str) -> DownTrack | None:
    """On the origin: the video track its relay peer for ``edge_id`` is forwarded."""
    sfu_room = origin.app[SFU_KEY].get_room(room)
    relay = sfu_room.peers.get(f"cascade-{edge_id}") if sfu_room is not None else None
    if relay is None:
        return None
    for conn in relay.connections.values():
        if isinstance(conn, DownConnection):
            for down in conn.tracks:
                if down.kind == "video":
                    return down
    return None


async def test_only_the_video_an_edge_shows_crosses_the_cascade(
    aiohttp_server: Any, aiohttp_client: Any, config: Config, database_url: str
) -> None:
    a, b = await two_nodes(aiohttp_server, aiohttp_client, config, cascade_peers=1)
    accounts = Accounts(a, database_url)
    teacher = await accounts.with_role("teacher")
    student = await accounts.register()
    closing: list[Any] = []
    try:
        on_a = await connect(a, teacher["access_token"])
        closing.append(on_a)
        await on_a.request("join", "joined", room="lecture")
        pc, _ = await publish(on_a, BLUE)
        closing.append(pc)

        async def a_loaded() -> bool:  # as B sees it (A's last heartbeat)
            node = await b.app[NODES].node("node-a")
            return node is not None and node.peers >= 1

        await eventually(a_loaded, 15, "A's load in the registry")
        on_b = await connect(b, student["access_token"])
        closing.append(on_b)
        await on_b.request("join", "joined", room="lecture")
        assert b.app[SFU_KEY].get_room("lecture").origin == "node-a"
        added = await on_b.wait("stream-added", within=15)

        def relayed() -> DownTrack | None:
            return _relayed_video(a, "lecture", "node-b")

        # relayed, but no one on B shows it: no video crosses
        await eventually(lambda: (d := relayed()) is not None and d.paused, 10, "video held")
        down = relayed()
        assert down is not None and down.pause_reason == "hidden", down

        viewer, sub_id = await subscribe(on_b, added["stream_id"])
        closing.append(viewer)
        await eventually(lambda: not down.paused, 5, "the video crossing once shown")
        await viewer.wait_frames(10, within=15)
        assert_frames_show(viewer.frames, BLUE)

        await on_b.send(
            type="view",
            views=[{"subscription_id": sub_id, "width": 0, "height": 0, "visible": False}],
        )
        await eventually(lambda: down.paused, 5, "the video held again once hidden")
    finally:
        for item in closing:
            await item.close()
