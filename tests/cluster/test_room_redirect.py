"""Two nodes (in-process apps sharing real PostgreSQL and Redis): a room placed on node A
is not opened a second time on node B; B relays a signalling WebSocket that joins it to A,
and a classroom live channel of its class (tests/cluster/test_signalling_relay.py and
tests/cluster/test_live_relay.py: the rest of that), and tells the HTTP ways in A's URL
(307 for the REST transports, WHIP and WHEP); the admin API on either node shows the same
cluster."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import aiohttp
from helpers import Accounts, assert_error, bearer, class_session
from sfu_api.ws_peers import connect, publisher_offer

from vtp.app import create_app
from vtp.appkeys import NODES, PLACEMENT, RECORDER, SFU_KEY
from vtp.cluster.nodes import LoadSample
from vtp.config import Config
from vtp.web.live import LIVE_ROOMS

SDP = {"Content-Type": "application/sdp"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _two_nodes(
    aiohttp_server: Any, aiohttp_client: Any, config: Config, *, regions: bool
) -> tuple[Any, Any, list[str]]:
    ports = [_free_port(), _free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    clients = []
    for name, port, url in zip(("node-a", "node-b"), ports, urls, strict=True):
        node_config = config.model_copy(
            update={
                "ice_addresses": ["127.0.0.1"],
                "sfu_open_rooms": True,
                "cluster": True,
                "node_id": name,
                "node_url": url,
                # regions: each opener's region holds only itself
                "region": f"region-{name}" if regions else "",
            }
        )
        server = await aiohttp_server(create_app(node_config), port=port)
        clients.append(await aiohttp_client(server))
    return clients[0], clients[1], urls


async def test_the_node_without_the_room_sends_joiners_to_its_node(
    aiohttp_server: Any, aiohttp_client: Any, config: Config, database_url: str
) -> None:
    a, b, urls = await _two_nodes(aiohttp_server, aiohttp_client, config, regions=True)
    accounts = Accounts(a, database_url)
    teacher = await accounts.with_role("teacher")
    admin = await accounts.with_role("admin")
    auth = bearer(teacher["access_token"])

    # the first join, through A, places the room on A (A's region), and opens it there
    on_a = await connect(a, teacher["access_token"])
    joined = await on_a.request("join", "joined", room="algebra")
    assert joined["room"] == "algebra"

    # through B: the join is relayed to A (the peer is A's), no second copy of the room
    on_b = await connect(b, teacher["access_token"])
    relayed = await on_b.request("join", "joined", room="algebra")
    assert relayed["peer_id"] in a.app[SFU_KEY].get_room("algebra").peers
    assert b.app[SFU_KEY].get_room("algebra") is None

    # REST transports and WHIP on B: 307 to the same request on A, with the JSON error
    pc, offer = await publisher_offer((200, 40))
    try:
        path = "/api/v1/sfu/rooms/algebra/transports"
        resp = await b.post(
            path,
            json={"direction": "send", "sdp": offer, "label": "cam"},
            headers=auth,
            allow_redirects=False,
        )
        assert resp.status == 307
        assert resp.headers["Location"] == urls[0] + path
        assert_error(await resp.json(), "room_elsewhere")

        resp = await b.post(
            "/api/v1/whip/algebra", data=offer, headers={**SDP, **auth}, allow_redirects=False
        )
        assert resp.status == 307
        location = resp.headers["Location"]
        assert location == urls[0] + "/api/v1/whip/algebra"
        resp = await b.post(
            "/api/v1/whep/algebra", data=offer, headers={**SDP, **auth}, allow_redirects=False
        )
        assert resp.status == 307
        assert resp.headers["Location"] == urls[0] + "/api/v1/whep/algebra"
        async with aiohttp.ClientSession() as http:  # a WHIP client follows it
            there = await http.post(location, data=offer, headers={**SDP, **auth})
            assert there.status == 201, await there.text()
    finally:
        await pc.close()
    assert b.app[SFU_KEY].get_room("algebra") is None

    # a room first opened through B is B's (B's region), and A relays to it
    on_b_too = await connect(b, teacher["access_token"])
    await on_b_too.request("join", "joined", room="geometry")
    second_on_a = await connect(a, teacher["access_token"])
    relayed = await second_on_a.request("join", "joined", room="geometry")
    assert relayed["peer_id"] in b.app[SFU_KEY].get_room("geometry").peers
    assert a.app[SFU_KEY].get_room("geometry") is None

    # the operators' view, the same from either node
    admin_auth = bearer(admin["access_token"])
    for client, me in ((a, "node-a"), (b, "node-b")):
        resp = await client.get("/api/v1/admin/nodes", headers=admin_auth)
        body = await resp.json()
        assert resp.status == 200, body
        assert body["node_id"] == me
        nodes = {n["id"]: n for n in body["nodes"]}
        assert set(nodes) == {"node-a", "node-b"}
        assert nodes["node-a"]["url"] == urls[0] and nodes["node-a"]["rooms_placed"] == 1
        assert nodes["node-b"]["rooms_placed"] == 1
        resp = await client.get("/api/v1/admin/rooms/algebra", headers=admin_auth)
        assert (await resp.json())["node"]["id"] == "node-a"
    resp = await a.get("/api/v1/admin/rooms/nowhere", headers=admin_auth)
    assert (await resp.json()) == {"room": "nowhere", "node": None}
    resp = await a.get("/api/v1/admin/rooms/bad%20name", headers=admin_auth)
    assert resp.status == 400
    assert_error(await resp.json(), "validation_error")
    resp = await a.get("/api/v1/admin/nodes", headers=auth)  # a teacher is not an operator
    assert resp.status == 403
    resp = await a.get("/api/v1/admin/nodes")
    assert resp.status == 401
    for ws_client in (on_a, on_b, on_b_too, second_on_a):
        await ws_client.ws.close()


async def test_a_session_started_on_a_busy_node_opens_on_the_other_and_records_there(
    aiohttp_server: Any, aiohttp_client: Any, config: Config, database_url: str
) -> None:
    a, b, urls = await _two_nodes(aiohttp_server, aiohttp_client, config, regions=False)
    busy = b.app[NODES]
    busy.me.peers = 10_000  # as its next beat would say (the sample is read each beat)
    busy._sample = lambda: LoadSample(peers=10_000)
    await busy.beat()
    accounts = Accounts(b, database_url)
    teacher = await accounts.with_role("teacher")
    student = await accounts.register()
    auth = bearer(teacher["access_token"])
    # the teacher starts it through B: the room is placed on A (less loaded), opened there
    # when its first peer arrives, and never on B
    session = await class_session(b, teacher, [student])
    room = session["room_name"]
    assert b.app[SFU_KEY].get_room(room) is None
    assert await b.app[PLACEMENT].owner(room) == "node-a"

    on_b = await connect(b, student["access_token"])
    await on_b.request("join", "joined", room=room)  # (relayed to A)
    assert b.app[SFU_KEY].get_room(room) is None
    on_a = await connect(a, student["access_token"])
    await on_a.request("join", "joined", room=room)

    # the classroom live channel is kept beside the room: B relays it to A's
    live_path = f"/api/v1/sessions/{session['id']}/live"
    ws = await b.ws_connect(live_path)
    await ws.send_json({"type": "auth", "token": student["access_token"]})
    ready = await ws.receive_json(timeout=5)
    assert ready["type"] == "ready", ready
    assert ready["you"]["user_id"] == student["user"]["id"]
    assert not b.app[LIVE_ROOMS].rooms
    (live_room,) = a.app[LIVE_ROOMS].rooms.values()
    assert str(live_room.session_id) == session["id"]
    assert [str(u) for u in live_room.participants] == [student["user"]["id"]]
    await ws.close()

    # recording runs beside the room: B sends the teacher to A, for start and for stop
    path = f"/api/v1/sessions/{session['id']}/recording/start"
    resp = await b.post(path, headers=auth, allow_redirects=False)
    assert resp.status == 307 and resp.headers["Location"] == urls[0] + path
    assert_error(await resp.json(), "room_elsewhere")
    resp = await a.post(path, headers=auth)
    assert resp.status == 201, await resp.text()
    assert b.app[RECORDER].recording_of(uuid.UUID(session["id"])) is None
    stop = f"/api/v1/sessions/{session['id']}/recording/stop"
    resp = await b.post(stop, headers=auth, allow_redirects=False)
    assert resp.status == 307 and resp.headers["Location"] == urls[0] + stop
    resp = await a.post(stop, headers=auth)
    assert resp.status == 200, await resp.text()
    for ws_client in (on_a, on_b):
        await ws_client.ws.close()
