"""Draining (vtp.drain) in-process: a node on its own opens no new room while draining and
finishes as soon as its rooms close; in a cluster, the rooms still open at the timeout are
placed on the other node and their signalling sockets (``reconnect``, 1012) and classroom
live channels (``room_elsewhere``, 4307) are sent there."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import aiohttp
from helpers import Accounts, bearer, class_session
from sfu_api.ws_peers import WsClient, connect

from vtp.app import create_app
from vtp.appkeys import NODES, PLACEMENT, SFU_KEY
from vtp.config import Config
from vtp.drain import Drain


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _node_config(config: Config, **update: Any) -> Config:
    return config.model_copy(
        update={"ice_addresses": ["127.0.0.1"], "sfu_open_rooms": True, "room_grace_s": 0.5}
        | update
    )


async def _teacher_in_a_room(
    aiohttp_client: Any, config: Config, database_url: str, drain_timeout_s: float
) -> tuple[Any, dict[str, Any], WsClient]:
    """A node on its own (with this drain timeout), and a teacher's socket joined in the
    room "algebra" there: the node's test client, the teacher, the socket."""
    client = await aiohttp_client(create_app(_node_config(config, drain_timeout_s=drain_timeout_s)))
    teacher = await Accounts(client, database_url).with_role("teacher")
    ws = await connect(client, teacher["access_token"])
    await ws.request("join", "joined", room="algebra")
    return client, teacher, ws


async def test_a_node_on_its_own_opens_no_room_while_draining_and_stops_when_they_close(
    aiohttp_client: Any, config: Config, database_url: str
) -> None:
    client, teacher, ws = await _teacher_in_a_room(aiohttp_client, config, database_url, 60.0)

    started = time.monotonic()
    await client.app[NODES].drain()  # (the drain's first step, done here to go on at once)
    draining = asyncio.create_task(Drain(client.app).run())
    # no new room...
    other = await connect(client, teacher["access_token"])
    await other.send(type="join", room="geometry", request_id="j")
    refused = await other.error("no_node", request_id="j")
    assert "shutting down" in refused["error"]["message"]
    assert client.app[SFU_KEY].get_room("geometry") is None
    # ...but the open one takes joiners until it closes
    await other.request("join", "joined", room="algebra")
    assert not draining.done()
    await other.request("leave", "left")
    await ws.request("leave", "left")
    # the room closes after its grace: the drain ends then, long before its timeout
    await asyncio.wait_for(draining, 10)
    assert time.monotonic() - started < 10
    assert client.app[SFU_KEY].get_room("algebra") is None
    for conn in (ws, other):
        assert not any(m.get("type") == "reconnect" for m in conn.seen)
        await conn.close()


async def test_a_second_sigterm_moves_the_clients_at_once(
    aiohttp_client: Any, config: Config, database_url: str
) -> None:
    """(On its own, the node has nowhere to send them: ``reconnect`` names no URL.)"""
    client, _, ws = await _teacher_in_a_room(aiohttp_client, config, database_url, 600.0)
    drain = Drain(client.app)
    await client.app[NODES].drain()
    draining = asyncio.create_task(drain.run())
    await ws.request("ping", "pong")  # (the drain waits for the room meanwhile)
    assert not draining.done()
    drain.hurry()
    await asyncio.wait_for(draining, 10)
    told = await ws.wait("reconnect")
    assert told["url"] is None and told["room"] == "algebra", told
    assert await ws.closed() == 1012


async def test_rooms_open_at_the_timeout_move_with_their_clients(
    aiohttp_server: Any, aiohttp_client: Any, config: Config, database_url: str
) -> None:
    clients, urls = [], []
    for name in ("node-a", "node-b"):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        node_config = _node_config(
            config,
            cluster=True,
            node_id=name,
            node_url=url,
            region=f"region-{name}",  # a room goes where it is opened
            drain_timeout_s=0.5,
        )
        server = await aiohttp_server(create_app(node_config), port=port)
        clients.append(await aiohttp_client(server))
        urls.append(url)
    a, b = clients
    accounts = Accounts(a, database_url)
    teacher = await accounts.with_role("teacher")
    student = await accounts.register()
    session = await class_session(a, teacher, [student])
    room = session["room_name"]
    assert await a.app[PLACEMENT].owner(room) == "node-a"

    sfu_ws = await connect(a, student["access_token"])
    await sfu_ws.request("join", "joined", room=room)
    live_path = f"/api/v1/sessions/{session['id']}/live"
    live = await a.ws_connect(live_path)
    await live.send_json({"type": "auth", "token": student["access_token"]})
    assert (await live.receive_json(timeout=5))["type"] == "ready"

    await Drain(a.app).run()

    # the room is B's now, and each of the student's sockets was sent there
    assert await a.app[PLACEMENT].owner(room) == "node-b"
    told = await sfu_ws.wait("reconnect")
    assert told == {
        "type": "reconnect",
        "room": room,
        "url": urls[1] + "/api/v1/sfu/ws",
        "reason": "node draining",
    }
    assert await sfu_ws.closed() == 1012
    sent = await live.receive_json(timeout=5)
    while sent["type"] != "error":  # (presence updates may come first)
        sent = await live.receive_json(timeout=5)
    assert sent["error"]["code"] == "room_elsewhere", sent
    assert sent["error"]["details"]["url"] == urls[1] + live_path
    assert (await live.receive(timeout=5)).data == 4307
    # the student's peer is gone from A (no resume waits for it)
    sfu_room = a.app[SFU_KEY].get_room(room)
    assert sfu_room is None or not sfu_room.peers
    # there, the student joins again (placement agrees: no room_elsewhere)
    async with aiohttp.ClientSession() as http:
        there = await http.ws_connect(told["url"], headers=bearer(student["access_token"]))
        await there.receive_json(timeout=5)  # authenticated
        await there.send_json({"type": "join", "room": room, "request_id": "j"})
        assert (await there.receive_json(timeout=5))["type"] == "joined"
        await there.close()
    assert b.app[SFU_KEY].get_room(room) is not None
