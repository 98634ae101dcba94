"""Any door, with real `vtp serve` processes sharing PostgreSQL and Redis: a teacher
publishes through node A's URL (the room is placed on A); a student's signalling
WebSocket is on node B, which relays it to A: the student decodes the teacher's video,
whose ICE candidates are A's media port; an error relayed keeps its code; closing the
socket on B ends the peer on A; killing B makes A drop B's peers; killing A tells the
client on B (error node_gone, close 1012) so that it reconnects. The classroom live
channel is relayed the same way (a participant through B; B killed: A drops her).

Also measures signalling round trips (ping/pong) on a socket served locally against one
relayed (printed: ``pytest -s``)."""

from __future__ import annotations

import asyncio
import signal
import socket
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from cluster.test_cluster_processes import Process, _env, _free_port, _health
from cluster.test_live_relay import _open
from helpers import Accounts, class_session
from sfu_api.ws_peers import BLUE, Viewer, WsClient, assert_frames_show, connect, publish

pytestmark = pytest.mark.slow

RESUME_S = 1.0  # how long a dropped socket's peer waits for a resume
NODE_TTL_S = 6.0  # (the default)


class Node:
    def __init__(self, name: str, tmp_path: Path, database_url: str, redis_url: str) -> None:
        self.name = name
        self.port = _free_port()
        self.media_port = _free_port(socket.SOCK_DGRAM)
        self.url = f"http://127.0.0.1:{self.port}"
        env = _env(
            tmp_path / name,
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            VTP_CLUSTER="true",
            VTP_NODE_ID=name,
            VTP_NODE_URL=self.url,
            VTP_REGION=f"region-{name}",  # a room is placed where it is first opened
            VTP_ICE_UDP_PORT=str(self.media_port),
            VTP_SFU_OPEN_ROOMS="true",
            VTP_SFU_RESUME_S=str(RESUME_S),
        )
        self.process = Process(["serve", "--port", str(self.port)], env, tmp_path / f"{name}.log")
        self.http: aiohttp.ClientSession | None = None

    async def ready(self) -> aiohttp.ClientSession:
        deadline = time.monotonic() + 90
        while (await asyncio.to_thread(_health, self.url)) is None:
            if self.process.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not start: {self.process.tail()}")
            await asyncio.sleep(0.2)
        self.http = aiohttp.ClientSession(base_url=self.url)
        return self.http

    @property
    def client(self) -> aiohttp.ClientSession:
        """The HTTP client of a node that is ready."""
        assert self.http is not None
        return self.http

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
        self.process.kill()


@dataclass
class Nodes:
    """Node A and node B, ready; accounts made through A (a teacher already)."""

    a: Node
    b: Node
    accounts: Accounts
    teacher: dict[str, Any]


@pytest_asyncio.fixture
async def nodes(tmp_path: Path, database_url: str, redis_url: str) -> AsyncIterator[Nodes]:
    a = Node("node-a", tmp_path, database_url, redis_url)
    b = Node("node-b", tmp_path, database_url, redis_url)
    try:
        await a.ready()
        await b.ready()
        accounts = Accounts(a.client, database_url)
        yield Nodes(a, b, accounts, await accounts.with_role("teacher"))
    finally:
        await a.stop()
        await b.stop()


def _candidate_ports(sdp: str) -> set[int]:
    return {int(line.split()[5]) for line in sdp.splitlines() if line.startswith("a=candidate:")}


async def _until(check: Callable[[], bool], within: float, what: str) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > within:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def _round_trips(ws: WsClient, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        await ws.request("ping", "pong")
        times.append((time.perf_counter() - start) * 1000)
    return times


async def test_a_student_through_node_b_decodes_the_teacher_on_node_a(nodes: Nodes) -> None:
    a, b, teacher = nodes.a, nodes.b, nodes.teacher
    student = await nodes.accounts.register()

    on_a = await connect(a.client, teacher["access_token"])
    await on_a.request("join", "joined", room="lab")
    pub_pc, stream_id = await publish(on_a, BLUE)
    viewer = Viewer()
    try:
        via_b = await connect(b.client, student["access_token"])
        joined = await via_b.request("join", "joined", room="lab")
        peer_id = joined["peer_id"]
        await on_a.wait("peer-joined", within=5)
        await via_b.wait("stream-added", stream_id=stream_id)
        offer = await via_b.request("subscribe", "offer", stream_id=stream_id)
        # the offer B relays names A's media port only: the media goes to A
        assert _candidate_ports(offer["sdp"]) == {a.media_port}, offer["sdp"]
        answer = await viewer.answer(offer["sdp"])
        await via_b.request(
            "answer", "answered", subscription_id=offer["subscription_id"], sdp=answer
        )
        await viewer.wait_frames(20, within=30)
        assert_frames_show(viewer.frames, BLUE)
        ice = viewer.pc.getTransceivers()[0].receiver.transport.transport
        nominated = ice._connection._nominated  # (aioice: the pair carrying media)
        assert {p.remote_candidate.port for p in nominated.values()} == {a.media_port}

        # an error relayed: the same code, for the same request
        await via_b.send(type="publish", request_id="bad", sdp="v=0\r\nm=video junk")
        await via_b.error("bad_sdp", request_id="bad")

        # signalling round trips: served on A itself, relayed by B to A
        await _round_trips(on_a, 20)
        await _round_trips(via_b, 20)  # (warm up both)
        local = await _round_trips(on_a, 200)
        relayed = await _round_trips(via_b, 200)
        print(
            f"\nping round trip, ms (median / p90 of 200): local "
            f"{statistics.median(local):.2f} / {statistics.quantiles(local, n=10)[-1]:.2f}, "
            f"relayed {statistics.median(relayed):.2f} / "
            f"{statistics.quantiles(relayed, n=10)[-1]:.2f}, ratio "
            f"{statistics.median(relayed) / statistics.median(local):.2f}"
        )

        # and a request with work behind it: subscribe (the server's offer) + unsubscribe
        local_student = await connect(a.client, student["access_token"])
        await local_student.request("join", "joined", room="lab")
        spans: dict[str, list[float]] = {"local": [], "relayed": []}
        for _ in range(10):
            for name, ws in (("local", local_student), ("relayed", via_b)):
                start = time.perf_counter()
                sub = await ws.request("subscribe", "offer", stream_id=stream_id)
                spans[name].append((time.perf_counter() - start) * 1000)
                await ws.request(
                    "unsubscribe", "unsubscribed", subscription_id=sub["subscription_id"]
                )
        print(
            "subscribe -> offer, ms (median of 10): local "
            f"{statistics.median(spans['local']):.1f}, relayed "
            f"{statistics.median(spans['relayed']):.1f}"
        )
        await local_student.close()

        # the student closes the socket on B: the peer leaves A's room at once
        await via_b.close()
        left = await on_a.wait("peer-left", within=5, peer_id=peer_id)
        assert left["reason"] == "disconnected", left

        # node B dies with a student's socket on it: A drops that peer (B leaves the
        # registry within its TTL, the peer then waits VTP_SFU_RESUME_S for a resume)
        again = await connect(b.client, student["access_token"])
        peer_id = (await again.request("join", "joined", room="lab"))["peer_id"]
        await on_a.wait("peer-joined", within=5)
        b.process.proc.kill()
        killed = time.monotonic()
        await on_a.wait("peer-left", within=NODE_TTL_S + RESUME_S + 6, peer_id=peer_id)
        print(f"B killed: its peer left A's room after {time.monotonic() - killed:.1f} s")
        assert await again.closed(within=5) is not None  # (its node is gone)
    finally:
        await viewer.close()
        await pub_pc.close()
        await on_a.close()


async def test_when_the_rooms_node_dies_the_client_on_the_door_is_told(nodes: Nodes) -> None:
    a, b, teacher = nodes.a, nodes.b, nodes.teacher
    on_a = await connect(a.client, teacher["access_token"])
    await on_a.request("join", "joined", room="studio")
    via_b = await connect(b.client, teacher["access_token"])
    await via_b.request("join", "joined", room="studio")
    a.process.proc.kill()
    killed = time.monotonic()
    await via_b.error("node_gone")
    assert await via_b.closed(within=NODE_TTL_S + 6) == 1012
    print(f"A killed: the client on B was told after {time.monotonic() - killed:.1f} s")
    # the client connects again (to B): the room is placed again, now on B
    back = await connect(b.client, teacher["access_token"])
    await back.request("join", "joined", room="studio")
    await back.close()
    assert await on_a.closed(within=5) is not None  # (its node is gone)


async def test_a_rooms_node_that_stops_closes_the_relayed_sockets_as_its_own(nodes: Nodes) -> None:
    """SIGINT on the room's node (stop at once; SIGTERM drains: tests/cluster/
    test_drain_processes.py): its relayed sockets are closed like its own (1001, server
    shutdown), through their doors, at once."""
    a, b, teacher = nodes.a, nodes.b, nodes.teacher
    on_a = await connect(a.client, teacher["access_token"])
    await on_a.request("join", "joined", room="gym")
    via_b = await connect(b.client, teacher["access_token"])
    await via_b.request("join", "joined", room="gym")
    a.process.proc.send_signal(signal.SIGINT)
    assert await via_b.closed(within=10) == 1001
    assert await on_a.closed(within=10) == 1001
    await asyncio.to_thread(a.process.proc.wait, 40)


async def test_a_live_channel_through_node_b_and_node_b_killed(nodes: Nodes) -> None:
    """The classroom live channel, relayed the same way: a student's channel on B is a
    participant of the class on A (hand raised through B, seen on A); B killed, A drops
    her once B has left the registry (``VTP_NODE_TTL_S`` + one or two heartbeats)."""
    a, b, teacher = nodes.a, nodes.b, nodes.teacher
    student = await nodes.accounts.with_role("student")
    session = await class_session(a.client, teacher, [student])  # (placed on A)
    on_a = await _open(a.client, session["id"], teacher)
    await on_a.next("ready")
    via_b = await _open(b.client, session["id"], student)
    ready = await via_b.next("ready")
    student_id = student["user"]["id"]
    assert {p["user_id"] for p in ready["participants"]} == {teacher["user"]["id"], student_id}
    await on_a.next("participant-joined")
    await via_b.send(type="hand", raised=True)
    assert (await on_a.next("hand", user_id=student_id))["raised"] is True
    b.process.proc.kill()
    killed = time.monotonic()
    left = await on_a.next("participant-left", within=NODE_TTL_S + 6, user_id=student_id)
    assert left["reason"] == "left"
    print(f"B killed: its live participant left A's class after {time.monotonic() - killed:.1f} s")
    await on_a.ws.close()
