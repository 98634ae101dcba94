"""A signalling WebSocket that drops without a close frame (the client's network changed)
leaves its peer waiting VTP_SFU_RESUME_S for a new socket to resume it, connections and
all; a close frame, a wrong user, a used token or a late resume do not resume."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from ws_peers import RED, WsClient, connect, publish, subscribe

from vtp.config import Config

RESUME_S = 3.0


@pytest.fixture
def config(config: Config) -> Config:
    return config.model_copy(
        update={
            "ice_addresses": ["127.0.0.1"],
            "ice_udp_port": 0,  # (ICE restart needs the one-port mode)
            "room_grace_s": 2.0,
            "peer_timeout_s": 10.0,
            "sfu_open_rooms": True,
            "sfu_resume_s": RESUME_S,
        }
    )


def ufrag(sdp: str) -> str:
    found = re.search(r"^a=ice-ufrag:(\S+)", sdp, re.MULTILINE)
    assert found is not None
    return found[1]


async def _teacher_in(
    client: Any, accounts: Any, room: str
) -> tuple[WsClient, dict[str, Any], dict[str, Any]]:
    """The teacher's socket joined in ``room``, the teacher, and a student's login (its
    tokens are the ones a resuming socket of hers presents)."""
    teacher = await accounts.with_role("teacher")
    student = await accounts.register()
    login = await accounts.login(student["user"]["email"], student["password"])
    a = await connect(client, teacher["access_token"])
    await a.request("join", "joined", room=room)
    return a, teacher, login


async def _student_in(
    client: Any, login: dict[str, Any], room: str
) -> tuple[WsClient, dict[str, Any]]:
    """The student's socket, joined in ``room``, and its join reply."""
    b = await connect(client, login["access_token"])
    return b, await b.request("join", "joined", room=room)


async def test_a_dropped_socket_is_resumed_with_its_connections(client: Any, accounts: Any) -> None:
    a, teacher, login = await _teacher_in(client, accounts, "resume-1")
    pub_pc, stream_id = await publish(a, RED)
    b, joined = await _student_in(client, login, "resume-1")
    assert joined["resumed"] is False and joined["resume_token"]
    viewer, sub_id = await subscribe(b, stream_id)
    await viewer.wait_frames(10)

    # the network goes: no close frame; a new socket takes the same peer back
    b.drop()
    b2 = await connect(client, login["access_token"])
    again = await b2.request("join", "joined", room="resume-1", resume_token=joined["resume_token"])
    assert again["resumed"] is True and again["peer_id"] == joined["peer_id"]
    assert again["connections"] == [sub_id]
    assert again["resume_token"] != joined["resume_token"]
    await b2.wait("stream-added", stream_id=stream_id)  # what the room holds now
    frames = len(viewer.frames)
    await viewer.wait_frames(frames + 10)  # the subscription never stopped
    # and its ICE restarts through the new socket
    old_offer = viewer.pc.remoteDescription.sdp
    restarted = await b2.request("restart-ice", "ice-restarted", connection_id=sub_id)
    assert ufrag(restarted["sdp"]) != ufrag(old_offer)
    assert not any(
        m.get("type") == "peer-left" and m.get("peer_id") == joined["peer_id"] for m in a.seen
    )

    # a used token, or another user's, is an ordinary join (a new peer)
    c = await connect(client, teacher["access_token"])
    other = await c.request("join", "joined", room="resume-1", resume_token=again["resume_token"])
    assert other["resumed"] is False and other["peer_id"] != joined["peer_id"]
    await c.close()
    b3 = await connect(client, login["access_token"])
    stale = await b3.request("join", "joined", room="resume-1", resume_token=joined["resume_token"])
    assert stale["resumed"] is False and stale["peer_id"] != joined["peer_id"]
    await b3.close()

    # dropped again and not resumed: the peer leaves once the wait is over
    dropped = time.monotonic()
    b2.drop()
    left = await a.wait("peer-left", within=RESUME_S + 10, peer_id=joined["peer_id"])
    assert left["reason"] == "disconnected"
    assert time.monotonic() - dropped >= RESUME_S - 0.5
    late = await connect(client, login["access_token"])
    gone = await late.request("join", "joined", room="resume-1", resume_token=again["resume_token"])
    assert gone["resumed"] is False
    await late.close()
    await viewer.close()
    await pub_pc.close()
    await a.close()


async def test_a_closed_socket_ends_its_peer_at_once(client: Any, accounts: Any) -> None:
    a, _, login = await _teacher_in(client, accounts, "resume-2")
    b, joined = await _student_in(client, login, "resume-2")
    closed = time.monotonic()
    await b.close()  # a close frame: the tab closed
    await a.wait("peer-left", within=RESUME_S, peer_id=joined["peer_id"])
    assert time.monotonic() - closed < RESUME_S
    b2 = await connect(client, login["access_token"])
    again = await b2.request("join", "joined", room="resume-2", resume_token=joined["resume_token"])
    assert again["resumed"] is False
    await b2.close()
    await a.close()


async def test_a_parked_peer_whose_right_ends_leaves_at_once(client: Any, accounts: Any) -> None:
    """The socket is gone, the peer waits for a resume - and the user's tokens are
    revoked meanwhile (a password change, a disabled account): the peer leaves then,
    for that reason, and cannot be resumed."""
    import uuid

    from vtp.appkeys import TOKENS

    a, _, login = await _teacher_in(client, accounts, "resume-3")
    b, joined = await _student_in(client, login, "resume-3")
    b.drop()
    await client.app[TOKENS].revoke_user_tokens(
        uuid.UUID(login["user"]["id"]), reason="account disabled"
    )
    left = await a.wait("peer-left", within=RESUME_S, peer_id=joined["peer_id"])
    assert left["reason"].startswith("access revoked"), left
    await a.close()


def _peer_connections(client: Any, room: str, peer_id: str) -> list[str]:
    from vtp.appkeys import SFU_KEY

    found = client.app[SFU_KEY].get_room(room)
    assert found is not None
    return list(found.peers[peer_id].connections)


async def test_a_resume_closes_the_connections_the_client_does_not_claim(
    client: Any, accounts: Any
) -> None:
    """A subscribe whose offer the dropped socket never delivered leaves the server a
    subscription the client does not know: the resuming join lists what the client
    knows (connections) and the server closes the rest at once."""
    a, _, login = await _teacher_in(client, accounts, "resume-claim")
    pub_pc, stream_id = await publish(a, RED)
    b, joined = await _student_in(client, login, "resume-claim")
    viewer, sub_id = await subscribe(b, stream_id)
    # a second subscription: made on the server, its offer lost with the network
    lost = await b.request("subscribe", "offer", stream_id=stream_id)
    peer_id = joined["peer_id"]
    assert sorted(_peer_connections(client, "resume-claim", peer_id)) == sorted(
        [sub_id, lost["subscription_id"]]
    )
    b.drop()
    b2 = await connect(client, login["access_token"])
    again = await b2.request(
        "join",
        "joined",
        room="resume-claim",
        resume_token=joined["resume_token"],
        connections=[sub_id],
    )
    assert again["resumed"] is True and again["connections"] == [sub_id]
    assert _peer_connections(client, "resume-claim", peer_id) == [sub_id]
    frames = len(viewer.frames)
    await viewer.wait_frames(frames + 10)  # the claimed one carries on
    await b2.close()
    await viewer.close()
    await pub_pc.close()
    await a.close()


async def test_a_request_in_flight_when_the_peer_is_resumed_elsewhere_closes_its_connection(
    client: Any, accounts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old socket is still handling a subscribe when a new socket resumes the peer:
    the subscription it makes then has no client to hear of it, and closes at once.
    (aiohttp's test server cancels a handler whose TCP connection drops, which VTP's
    server does not: the old socket here is left open, not dropped.)"""
    import asyncio

    from vtp.sfu import Peer

    a, _, login = await _teacher_in(client, accounts, "resume-flight")
    pub_pc, stream_id = await publish(a, RED)
    b, joined = await _student_in(client, login, "resume-flight")
    entered, release = asyncio.Event(), asyncio.Event()
    made: list[str] = []
    original = Peer.subscribe

    async def held(self: Peer, stream: str, offer_sdp: str | None = None) -> Any:
        entered.set()
        await release.wait()
        connection = await original(self, stream, offer_sdp)
        made.append(connection.id)
        return connection

    monkeypatch.setattr(Peer, "subscribe", held)
    await b.send(type="subscribe", stream_id=stream_id, request_id="in-flight")
    await asyncio.wait_for(entered.wait(), 10)
    # the network went, but the server has not noticed: its socket stays open (the client
    # reads nothing more) and the request goes on after the resume below
    b._reader.cancel()
    b2 = await connect(client, login["access_token"])
    again = await b2.request(
        "join", "joined", room="resume-flight", resume_token=joined["resume_token"], connections=[]
    )
    assert again["resumed"] is True and again["connections"] == []
    release.set()
    peer_id = joined["peer_id"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5  # (its own timeout would be peer_timeout_s, 10 s)
    while not made or made[0] in _peer_connections(client, "resume-flight", peer_id):
        assert loop.time() < deadline, (made, _peer_connections(client, "resume-flight", peer_id))
        await asyncio.sleep(0.02)
    assert not [m for m in b2.seen if m.get("request_id") == "in-flight"]
    await b2.close()
    await pub_pc.close()
    await a.close()
