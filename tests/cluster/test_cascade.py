"""Cascade across two real `vtp serve` processes sharing PostgreSQL and Redis, each
serving every connection on one UDP port (ICE-lite): the teacher publishes on node A;
once A has VTP_CASCADE_PEERS peers, a student whose signalling reaches node B is served
by B (not redirected), from one copy of the stream A relays to B; the student decodes
the teacher's video, and keyframe requests from B's subscribers reach A's publisher. When
the student leaves, B's relay ends (A's relay peer leaves); when the teacher's stream
ends, B's copy of it ends too. A student who publishes is served on A, never from B's
copy (a publish there is refused), and B relays that student's stream too."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import aioice.ice
import pytest
from helpers import JWT_TEST_SECRET
from redis import Redis
from sfu_api.ws_peers import BLUE, RED, WsClient, assert_frames_show, publish, subscribe
from test_cluster_processes import _free_port

pytestmark = pytest.mark.slow

T = TypeVar("T")
METRICS_TOKEN = "metrics-" + "m" * 30


async def _poll(check: Callable[[], Awaitable[T | None]], within: float, what: str) -> T:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {within} s")


class Node:
    def __init__(self, name: str, tmp: Path, database_url: str, redis_url: str) -> None:
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("VTP_")}
        env.update(
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            VTP_JWT_SECRET=JWT_TEST_SECRET,
            VTP_BCRYPT_COST="4",
            VTP_LOG_FORMAT="json",
            VTP_STATE_DIR=str(tmp / name),
            VTP_ICE_ADDRESSES="127.0.0.1",
            VTP_ICE_UDP_PORT=str(_free_port(socket.SOCK_DGRAM)),
            VTP_CLUSTER="true",
            VTP_NODE_ID=name,
            VTP_REGION=f"region-{name}",  # a room is placed on the node it is opened through
            VTP_SFU_OPEN_ROOMS="true",
            VTP_CASCADE_PEERS="1",
            VTP_METRICS_TOKEN=METRICS_TOKEN,
            VTP_PEER_TIMEOUT_S="10",
        )
        self.log = tmp / f"{name}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vtp", "serve", "--port", str(self.port)],
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def tail(self) -> str:
        return self.log.read_text()[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


async def _metric(http: aiohttp.ClientSession, node: Node, name: str) -> float:
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    async with http.get(node.url + "/metrics", headers=headers) as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def loopback_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice leaves 127.0.0.1 out of host candidates: the test's peers gather on it."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
async def nodes(
    tmp_path: Path, database_url: str, redis_url: str
) -> AsyncIterator[tuple[Node, Node]]:
    a = Node("node-a", tmp_path, database_url, redis_url)
    b = Node("node-b", tmp_path, database_url, redis_url)
    try:
        for node in (a, b):

            async def up(node: Node = node) -> bool:
                if node.proc.poll() is not None:
                    raise AssertionError(f"{node.name} exited: {node.tail()}")
                return await asyncio.to_thread(node.healthy)

            await _poll(up, 90, f"{node.name} healthy")
        yield a, b
    finally:
        a.stop()
        b.stop()


async def _user(http: aiohttp.ClientSession, node: Node, n: str) -> str:
    body = {"email": f"{n}-{time.time_ns()}@example.org", "password": "a good long password"}
    async with http.post(
        node.url + "/api/v1/auth/register", json={**body, "display_name": n}
    ) as resp:
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["access_token"])


async def _ws(http: aiohttp.ClientSession, node: Node, token: str) -> WsClient:
    ws = await http.ws_connect(
        node.url + "/api/v1/sfu/ws", headers={"Authorization": f"Bearer {token}"}
    )
    client = WsClient(ws)
    await client.wait("authenticated")
    return client


def _peers_of(redis: Redis, node_id: str) -> int:
    raw = redis.get(f"vtp:cluster:node:{node_id}")
    return int(json.loads(raw)["peers"]) if raw is not None else 0


@dataclass
class Lesson:
    """The teacher publishing on A (A's heartbeat already counts her), and what a test
    opened that is closed when it ends."""

    http: aiohttp.ClientSession
    teacher: WsClient
    stream_id: str
    closing: list[Any]


@asynccontextmanager
async def _teaching_on_a(a: Node, b: Node, redis_url: str, room: str) -> AsyncIterator[Lesson]:
    """The teacher joins ``room`` through A and publishes; on a failure both nodes' logs
    are printed."""
    redis = Redis.from_url(redis_url)
    closing: list[Any] = []
    async with aiohttp.ClientSession() as http:
        try:
            teacher = await _ws(http, a, await _user(http, a, "teacher"))
            closing.append(teacher)
            await teacher.request("join", "joined", room=room)
            pc, stream_id = await publish(teacher, BLUE)
            closing.append(pc)

            async def a_loaded() -> bool:  # A's heartbeat counts the teacher
                return _peers_of(redis, "node-a") >= 1

            await _poll(a_loaded, 10, "A's load in the registry")
            yield Lesson(http, teacher, stream_id, closing)
        except BaseException:
            print("--- A ---\n" + a.tail() + "\n--- B ---\n" + b.tail())
            raise
        finally:
            for item in closing:
                await item.close()
            redis.close()


async def _joined_through(
    lesson: Lesson, node: Node, name: str, room: str
) -> tuple[WsClient, dict[str, Any]]:
    """A new user's socket on ``node``, joined to ``room``, and the first stream it is
    told of."""
    client = await _ws(lesson.http, node, await _user(lesson.http, node, name))
    lesson.closing.append(client)
    await client.request("join", "joined", room=room)
    return client, await client.wait("stream-added", within=20)


async def test_students_on_b_decode_the_teacher_on_a_through_a_cascade(
    nodes: tuple[Node, Node], redis_url: str, loopback_clients: None
) -> None:
    a, b = nodes
    async with _teaching_on_a(a, b, redis_url, "lecture") as lesson:
        http, teacher, closing = lesson.http, lesson.teacher, lesson.closing
        # a student through B: served on B (no room_elsewhere), from A's relay
        students = []
        for i in range(2):
            student = await _ws(http, b, await _user(http, b, f"student{i}"))
            closing.append(student)
            joined = await student.request("join", "joined", room="lecture")
            assert joined["room"] == "lecture"
            students.append(student)
        viewers = []
        for student in students:
            added = await student.wait("stream-added", within=20)
            assert added["label"] == "camera"
            viewer, _ = await subscribe(student, added["stream_id"])
            closing.append(viewer)
            viewers.append(viewer)
        for viewer in viewers:
            await viewer.wait_frames(30, within=20)
            assert_frames_show(viewer.frames, BLUE)

        # one copy crosses: A has one subscription for B (its relay peer)
        assert await _metric(http, a, "vtp_sfu_subscriptions") == 1
        assert await _metric(http, b, "vtp_sfu_subscriptions") == 2

        # keyframe requests from B's subscribers reach A's publisher
        sdp = viewers[0].pc.remoteDescription.sdp
        ssrc = int(sdp[sdp.index("m=video") :].split("a=ssrc:", 1)[1].split()[0])
        receiver = next(
            r for r in viewers[0].pc.getReceivers() if r.track and r.track.kind == "video"
        )
        before = await _metric(http, a, "vtp_sfu_plis_sent_total")
        b_before = await _metric(http, b, "vtp_sfu_plis_received_total")

        async def pli_reached_a() -> bool:
            await receiver._send_rtcp_pli(ssrc)
            return await _metric(http, a, "vtp_sfu_plis_sent_total") > before

        await _poll(pli_reached_a, 10, "a PLI from B's subscriber at A's publisher")
        assert await _metric(http, b, "vtp_sfu_plis_received_total") > b_before

        # the teacher's stream ends on A: B's copy ends too
        await teacher.request("unpublish", "unpublished", stream_id=lesson.stream_id)
        for student in students:
            await student.wait("stream-removed", within=10)

        # the students leave: B's cascade ends, A's relay peer leaves
        for student in students:
            await student.request("leave", "left")

        async def relay_gone() -> bool:
            return await _metric(http, a, "vtp_sfu_peers") == 1

        await _poll(relay_gone, 15, "A's relay peer gone")


async def test_the_cascade_ends_when_the_origin_dies(
    nodes: tuple[Node, Node], redis_url: str, loopback_clients: None
) -> None:
    a, b = nodes
    async with _teaching_on_a(a, b, redis_url, "seminar") as lesson:
        http, closing = lesson.http, lesson.closing
        student, added = await _joined_through(lesson, b, "student", "seminar")
        viewer, _ = await subscribe(student, added["stream_id"])
        closing.append(viewer)
        await viewer.wait_frames(10, within=20)

        a.proc.kill()  # no goodbye: B finds out by itself
        await student.wait("stream-removed", within=15)

        async def relay_gone() -> bool:  # B's relay peer left; the student stays
            return (
                await _metric(http, b, "vtp_sfu_peers") == 1
                and await _metric(http, b, "vtp_sfu_publications") == 0
            )

        await _poll(relay_gone, 10, "B's relay ended")


async def test_a_student_who_publishes_is_served_where_the_room_lives(
    nodes: tuple[Node, Node], redis_url: str, loopback_clients: None
) -> None:
    """Past the threshold, a viewer arriving through B is served from B's copy of the
    room, where a publish is refused (relayed_room); a student who joins through B saying
    it publishes is relayed to A instead, publishes there, and the viewer on B sees that
    stream too, through the cascade."""
    a, b = nodes
    async with _teaching_on_a(a, b, redis_url, "seminar") as lesson:
        http, closing = lesson.http, lesson.closing
        viewer, _ = await _joined_through(lesson, b, "viewer", "seminar")
        await viewer.send(type="publish", sdp="v=0", request_id="p")
        refused = await viewer.wait("error", request_id="p")
        assert refused["error"]["code"] == "relayed_room", refused
        assert await _metric(http, a, "vtp_sfu_peers") == 2  # the teacher, B's relay

        speaker = await _ws(http, b, await _user(http, b, "speaker"))
        closing.append(speaker)
        await speaker.request("join", "joined", room="seminar", publish=True)
        assert await _metric(http, a, "vtp_sfu_peers") == 3  # served on A
        speaker_pc, speaker_stream = await publish(speaker, RED)
        closing.append(speaker_pc)

        # B relays the speaker's stream too: the viewer on B sees it
        added = await viewer.wait("stream-added", within=20)
        assert added["stream_id"] != speaker_stream  # (B's own id for its copy)
        seen, _ = await subscribe(viewer, added["stream_id"])
        closing.append(seen)
        await seen.wait_frames(10, within=20)
        assert_frames_show(seen.frames, RED)
