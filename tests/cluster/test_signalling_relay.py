"""Any door: two nodes (in-process apps sharing real PostgreSQL and Redis). A client whose
signalling WebSocket is on node B joins a room placed on node A: B relays its signalling
to A over Redis (vtp.channel.relay), its media goes to A. The peer is A's; errors
keep their codes; closing the socket on B ends the peer on A, dropping it parks it for
a resume (through either node); leaving gives the socket back to B."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers import Accounts, bearer
from sfu_api.ws_peers import (
    BLUE,
    Viewer,
    WsClient,
    assert_frames_show,
    connect,
    publish,
)
from two_nodes import two_nodes, until

from vtp.appkeys import SFU_KEY, TOKENS
from vtp.channel.relay import RELAY
from vtp.config import Config
from vtp.signalling.members import MEMBERS


def _candidate_ports(sdp: str) -> set[int]:
    return {int(line.split()[5]) for line in sdp.splitlines() if line.startswith("a=candidate:")}


@dataclass
class Nodes:
    """Test clients of node A and node B, accounts made through A (a teacher already),
    and the sockets on A that the fixture closes when the test ends."""

    a: Any
    b: Any
    accounts: Accounts
    teacher: dict[str, Any]
    on_a: list[WsClient] = field(default_factory=list)

    async def door_and_room(
        self, room: str, opener: dict[str, Any], joiner: dict[str, Any]
    ) -> tuple[WsClient, WsClient, str]:
        """``opener``'s socket on A opens ``room`` there, then ``joiner``'s socket on B
        joins it (relayed to A): both sockets, and the relayed one's peer id, which is
        A's."""
        on_a = await connect(self.a, opener["access_token"])
        self.on_a.append(on_a)
        await on_a.request("join", "joined", room=room)
        via_b = await connect(self.b, joiner["access_token"])
        peer_id = str((await via_b.request("join", "joined", room=room))["peer_id"])
        assert peer_id in self.a.app[SFU_KEY].get_room(room).peers
        return on_a, via_b, peer_id


@pytest.fixture
async def nodes(
    aiohttp_server: Any, aiohttp_client: Any, config: Config, database_url: str
) -> AsyncIterator[Nodes]:
    a, b = await two_nodes(aiohttp_server, aiohttp_client, config)
    accounts = Accounts(a, database_url)
    nodes = Nodes(a, b, accounts, await accounts.with_role("teacher"))
    yield nodes
    for ws in nodes.on_a:
        await ws.close()


async def test_a_subscriber_through_node_b_gets_the_video_published_on_node_a(nodes: Nodes) -> None:
    a, b, teacher = nodes.a, nodes.b, nodes.teacher
    student = await nodes.accounts.register()

    on_a = await connect(a, teacher["access_token"])
    await on_a.request("join", "joined", room="physics")
    pub_pc, stream_id = await publish(on_a, BLUE)

    via_b = await connect(b, student["access_token"])
    joined = await via_b.request("join", "joined", room="physics")
    peer_id = joined["peer_id"]
    # the peer is A's: B opened no room, and A knows the user behind it
    assert b.app[SFU_KEY].get_room("physics") is None
    room_a = a.app[SFU_KEY].get_room("physics")
    assert peer_id in room_a.peers
    member = a.app[MEMBERS].get("physics", peer_id)
    assert member is not None and str(member.user_id) == student["user"]["id"]
    assert [p["peer_id"] for p in joined["peers"]] == [p for p in room_a.peers if p != peer_id]
    assert len(b.app[RELAY].doors) == 1 and len(a.app[RELAY].hosted) == 1
    admin = bearer((await nodes.accounts.with_role("admin"))["access_token"])
    for node, door, room in ((a, 0, 1), (b, 1, 0)):
        metrics = await (await node.get("/metrics", headers=admin)).text()
        assert f'vtp_relayed_sockets{{side="door"}} {door}.0' in metrics
        assert f'vtp_relayed_sockets{{side="room"}} {room}.0' in metrics

    # the room's state reaches the client through B, then the subscription's media from A
    added = await via_b.wait("stream-added", stream_id=stream_id)
    assert {t["kind"] for t in added["tracks"]} == {"audio", "video"}
    viewer = Viewer()
    try:
        offer = await via_b.request("subscribe", "offer", stream_id=stream_id)
        sub_id = offer["subscription_id"]
        answer = await viewer.answer(offer["sdp"])
        await via_b.request("answer", "answered", subscription_id=sub_id, sdp=answer)
        await viewer.wait_frames(20, within=20)
        assert_frames_show(viewer.frames, BLUE)
        # ICE: the offer relayed names the candidates of A's connection, and the media
        # flows between the viewer and one of them
        on_a_conn = room_a.peers[peer_id].connections[sub_id]
        offer_ports = _candidate_ports(offer["sdp"])
        assert offer_ports and offer_ports == _candidate_ports(on_a_conn.pc.localDescription.sdp)
        ice = viewer.pc.getTransceivers()[0].receiver.transport.transport
        nominated = ice._connection._nominated  # (aioice: the pair carrying media)
        assert nominated and all(
            pair.remote_candidate.port in offer_ports for pair in nominated.values()
        )

        # an error relayed keeps its code and request id
        second = await via_b.request("subscribe", "offer", stream_id=stream_id)
        await via_b.send(
            type="answer", request_id="bad", subscription_id=second["subscription_id"], sdp="v=0"
        )
        await via_b.error("bad_sdp", request_id="bad")
        await via_b.send(type="unsubscribe", request_id="nf", subscription_id="nope")
        await via_b.error("not_found", request_id="nf")
        await via_b.send(type="publish", request_id="pub", sdp="v=0\r\nm=video junk")
        await via_b.error("bad_sdp", request_id="pub")

        # closing the socket on B: the peer leaves A's room at once
        await via_b.close()
        await until(lambda: peer_id not in room_a.peers, 5, "the relayed peer gone from A")
        await on_a.wait("peer-left", peer_id=peer_id)
        await until(lambda: not a.app[RELAY].hosted, 5, "A's relayed session over")
        assert not b.app[RELAY].doors
    finally:
        await viewer.close()
        await pub_pc.close()
        await on_a.close()


async def test_leave_gives_the_socket_back_and_a_drop_resumes_through_the_other_door(
    nodes: Nodes,
) -> None:
    a, b, teacher = nodes.a, nodes.b, nodes.teacher
    _, via_b, first_peer = await nodes.door_and_room("chemistry", teacher, teacher)
    room_a = a.app[SFU_KEY].get_room("chemistry")
    # leave: the relayed session ends, the socket is B's again and may join anew
    await via_b.request("leave", "left")
    await until(lambda: not b.app[RELAY].doors, 5, "B's link over")
    assert first_peer not in room_a.peers
    await via_b.request("ping", "pong")
    again = await via_b.request("join", "joined", room="chemistry")
    peer_id = again["peer_id"]

    # the socket drops (no close frame): the peer is parked on A, and a resume through A
    # (the other door) takes it back
    via_b.drop()
    await until(lambda: not b.app[RELAY].doors, 15, "B noticed the drop")
    assert peer_id in room_a.peers
    back = await connect(a, teacher["access_token"])
    resumed = await back.request(
        "join", "joined", room="chemistry", resume_token=again["resume_token"]
    )
    assert resumed["resumed"] is True and resumed["peer_id"] == peer_id
    await back.request("leave", "left")
    assert peer_id not in room_a.peers
    await back.close()


async def test_revoked_tokens_close_the_relayed_socket_and_end_its_peer(nodes: Nodes) -> None:
    a, b, teacher = nodes.a, nodes.b, nodes.teacher
    student = await nodes.accounts.register()
    on_a, via_b, peer_id = await nodes.door_and_room("biology", teacher, student)
    room_a = a.app[SFU_KEY].get_room("biology")

    # the account is disabled (through B's services): the session on A re-checks, and the
    # client on B hears why and is closed; the peer is gone from A
    await b.app[TOKENS].revoke_user_tokens(
        uuid.UUID(student["user"]["id"]), reason="account disabled"
    )
    left = await via_b.wait("left")
    assert left["reason"].startswith("access revoked"), left
    await via_b.error("token_revoked")
    assert await via_b.closed() == 4401
    assert peer_id not in room_a.peers
    await on_a.wait("peer-left", peer_id=peer_id)
    await until(lambda: not b.app[RELAY].doors and not a.app[RELAY].hosted, 5, "links over")


async def test_a_room_node_that_forgot_the_socket_makes_the_door_close_it(nodes: Nodes) -> None:
    """(As after a restart of the room's node under the same id, quicker than the
    registry tells.) The client hears node_gone and is closed with 1012: it reconnects."""
    a, b, teacher = nodes.a, nodes.b, nodes.teacher
    _, via_b, _ = await nodes.door_and_room("history", teacher, teacher)
    a.app[RELAY].hosted.clear()
    await via_b.send(type="ping", request_id="p")
    await via_b.error("node_gone")
    assert await via_b.closed() == 1012
    assert not b.app[RELAY].doors


async def test_a_socket_whose_bye_was_lost_ends_on_the_rooms_node(nodes: Nodes) -> None:
    """Pub/sub may lose a message: the door lists its links to each node at every
    heartbeat (an empty list once after the last), and the room's node ends the others."""
    a, b, teacher = nodes.a, nodes.b, nodes.teacher
    on_a, via_b, peer_id = await nodes.door_and_room("music", teacher, teacher)
    b.app[RELAY].doors.clear()  # (as if B's bye was lost)
    await until(lambda: not a.app[RELAY].hosted, 8, "A's relayed session ended")
    # (a dropped socket: its peer waits VTP_SFU_RESUME_S for a resume, then leaves)
    await on_a.wait("peer-left", within=8, peer_id=peer_id)
    await via_b.close()
