"""Draining and failure with real `vtp serve` processes (two nodes sharing PostgreSQL and
Redis, aiortc clients that decode): SIGTERM drains a node - it leaves placement for new
rooms at once, its clients are told to reconnect, do so onto the other node and get media
there, its recording is finished and uploaded, and it exits with 0; a node killed with
SIGKILL: its clients are back with media on the live node within 10 s, and its recording
is uploaded when it starts again on the same spool."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from helpers import Accounts
from redis import Redis
from sfu_api.ws_peers import RED, Viewer, WsClient, assert_frames_show, publish, subscribe
from test_cluster_processes import Process, _env, _free_port, _health, _nodes, _poll

pytestmark = pytest.mark.slow

WS_PATH = "/api/v1/sfu/ws"


class Node:
    """One `vtp serve` process of the two."""

    def __init__(self, name: str, tmp_path: Path, env: dict[str, str]) -> None:
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_dir = tmp_path / name
        self.env = _env(
            tmp_path,
            **env,
            VTP_CLUSTER="true",
            VTP_NODE_ID=name,
            VTP_REGION=f"region-{name}",  # a room opened through a node is placed on it
            VTP_STATE_DIR=str(self.state_dir),
            VTP_SFU_OPEN_ROOMS="true",
        )
        self.log = tmp_path / f"{name}.log"
        self.process: Process | None = None

    def start(self) -> None:
        self.process = Process(["serve", "--port", str(self.port)], self.env, self.log)

    def healthy(self) -> bool:
        body = _health(self.url)
        return body is not None and body.get("node") == self.name

    @property
    def proc(self) -> Process:
        assert self.process is not None
        return self.process


@contextlib.asynccontextmanager
async def _two_nodes(
    tmp_path: Path, database_url: str, redis_url: str, **env: str
) -> AsyncIterator[tuple[Node, Node]]:
    services = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, **env}
    nodes = (Node("node-a", tmp_path, services), Node("node-b", tmp_path, services))
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            await _until(node.healthy, 90, f"{node.name} up")
        yield nodes
    finally:
        for node in nodes:
            if node.process is not None:
                node.process.kill()


async def _until(check: Callable[[], Any], within: float, what: str) -> Any:
    """Poll a blocking check off the loop (the clients' media must go on meanwhile)."""
    return await asyncio.to_thread(_poll, check, within, what)


class Client:
    """A signalling client that goes where the servers send it: ``room_elsewhere`` on
    join, ``reconnect`` from a draining node, and back to its door (the node it first
    connected to) when its node drops the socket. A publisher publishes a red camera on
    each join; a viewer subscribes to the first stream it is told of and decodes it."""

    def __init__(self, http: aiohttp.ClientSession, door: str, token: str, room: str) -> None:
        self.http = http
        self.door = door
        self.token = token
        self.room = room
        self.conn: WsClient | None = None
        self.node_url = ""  # the signalling URL it is joined at
        self.pc: Any = None
        self.viewer: Viewer | None = None

    async def join(self, url: str | None = None, *, within: float = 20) -> dict[str, Any]:
        """Join at ``url`` (else the door), following redirects; retry while refused."""
        target = url or self.door + WS_PATH
        deadline = time.monotonic() + within
        reply: dict[str, Any] | None = None
        while True:
            try:
                ws = await self.http.ws_connect(
                    target, headers={"Authorization": f"Bearer {self.token}"}
                )
            except aiohttp.ClientError:
                target = self.door + WS_PATH  # that node is gone: the door places it again
            else:
                conn = WsClient(ws)
                await conn.wait("authenticated")
                await conn.send(type="join", room=self.room, request_id="join")
                reply = await conn.wait(None, request_id="join")
                if reply["type"] == "joined":
                    self.conn, self.node_url = conn, target
                    return reply
                await conn.close()
                error = reply["error"]
                # room_elsewhere: go there; anything else (the room's node still in the
                # registry but not answering): try again
                target = error["details"]["url"] if error["code"] == "room_elsewhere" else target
            if time.monotonic() > deadline:
                raise AssertionError(f"not joined within {within} s: {reply}")
            await asyncio.sleep(0.2)

    async def publish(self) -> str:
        assert self.conn is not None
        self.pc, stream_id = await publish(self.conn, RED)
        return stream_id

    async def view(self) -> Viewer:
        assert self.conn is not None
        added = await self.conn.wait("stream-added", within=20)
        self.viewer, _ = await subscribe(self.conn, added["stream_id"])
        return self.viewer

    async def drop_media(self) -> None:
        if self.pc is not None:
            await self.pc.close()
            self.pc = None
        if self.viewer is not None:
            await self.viewer.close()

    async def close(self) -> None:
        await self.drop_media()
        if self.conn is not None:
            await self.conn.close()


async def _live_class(http: aiohttp.ClientSession, url: str, database_url: str) -> Any:
    """A teacher's live session started through the node at ``url`` (its room placed
    there), with an enrolled student: (teacher, student, session, room name, a function
    to post as the teacher)."""
    accounts = Accounts(_Base(http, url), database_url)
    teacher = await accounts.with_role("teacher")
    student = await accounts.register()
    student.update(await accounts.login(student["user"]["email"], student["password"]))
    auth = {"Authorization": f"Bearer {teacher['access_token']}"}

    async def call(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        async with http.post(url + path, json=body, headers=auth) as resp:
            data: dict[str, Any] = await resp.json()
            assert resp.status in (200, 201), data
            return data

    course = await call("/api/v1/courses", {"code": f"D-{uuid.uuid4().hex[:4]}", "title": "D"})
    await call(
        f"/api/v1/courses/{course['id']}/enrollments",
        {"user_id": student["user"]["id"], "role": "student"},
    )
    session = await call(
        f"/api/v1/courses/{course['id']}/sessions",
        {
            "title": "Live",
            "scheduled_start": "2030-01-01T10:00:00+00:00",
            "scheduled_end": "2030-01-01T11:00:00+00:00",
            "students_may_publish": True,
        },
    )
    live = await call(f"/api/v1/sessions/{session['id']}/start")
    return teacher, student, session, live["room_name"], call


class _Base:
    """What :class:`helpers.Accounts` needs of a test client: post to a path."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http, self.base = http, base

    async def post(self, path: str, **kwargs: Any) -> Any:
        resp = await self.http.post(self.base + path, **kwargs)
        await resp.read()
        return resp


async def _recordings(database_url: str, session_id: str) -> list[dict[str, Any]]:
    """The session's recordings, oldest first: status, ended_reason."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT status, ended_reason FROM recordings WHERE session_id = $1
               ORDER BY created_at""",
            uuid.UUID(session_id),
        )
    finally:
        await conn.close()
    return [dict(row) for row in rows]


async def test_sigterm_drains_the_node_onto_the_other(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    redis = Redis.from_url(redis_url)
    async with (
        _two_nodes(tmp_path, database_url, redis_url, VTP_DRAIN_TIMEOUT_S="3") as (a, b),
        aiohttp.ClientSession() as http,
    ):
        teacher, student, session, room, call = await _live_class(http, a.url, database_url)
        await call(f"/api/v1/sessions/{session['id']}/recording/start")
        publisher = Client(http, a.url, teacher["access_token"], room)
        viewer = Client(http, b.url, student["access_token"], room)  # B relays it to A
        try:
            await publisher.join()
            await publisher.publish()
            await viewer.join()
            assert viewer.node_url == b.url + WS_PATH
            await (await viewer.view()).wait_frames(10, within=20)

            a.proc.proc.send_signal(15)  # SIGTERM
            signalled = time.monotonic()
            # at once: the registry says so, and a new room opened through A goes to B
            await _until(lambda: redis.sismember("vtp:cluster:draining", "node-a"), 5, "A draining")
            assert time.monotonic() - signalled < 2
            assert _nodes(redis)["node-a"]["draining"] is True
            new_room = f"new-{uuid.uuid4().hex[:6]}"
            probe = Client(http, a.url, teacher["access_token"], new_room)
            await probe.join()  # (A still relays it: the socket's door is A)
            assert redis.get(f"vtp:cluster:room:{new_room}") == b"node-b"
            await probe.close()
            # the class goes on on A meanwhile (VTP_DRAIN_TIMEOUT_S), media flowing
            assert viewer.viewer is not None
            await viewer.viewer.wait_frames(10, within=5)
            assert a.proc.proc.poll() is None

            # then both are told to reconnect: the one on A to B, the one whose socket B
            # holds to its door again (B relays it to the room's new node: itself)
            told = {}
            for client in (publisher, viewer):
                assert client.conn is not None
                told[client] = await client.conn.wait("reconnect", within=15)
                assert told[client]["reason"] == "node draining"
            assert told[publisher]["url"] == b.url + WS_PATH, told[publisher]
            assert told[viewer]["url"] is None, told[viewer]
            for client in (publisher, viewer):
                assert client.conn is not None
                assert await client.conn.closed(5) == 1012
                await client.drop_media()
            moved_at = time.monotonic()
            await publisher.join(told[publisher]["url"])
            await publisher.publish()
            await viewer.join(told[viewer]["url"])
            assert publisher.node_url == viewer.node_url == b.url + WS_PATH
            frames = await viewer.view()
            await frames.wait_frames(10, within=15)
            assert_frames_show(frames.frames, RED)
            media_again = time.monotonic() - moved_at

            # A exits by itself, with 0, its recording finished and uploaded first
            code = await asyncio.to_thread(a.proc.proc.wait, 60)
            assert code == 0, a.proc.tail()
            recordings = await _recordings(database_url, session["id"])
            assert recordings[0] == {"status": "available", "ended_reason": "server_stopping"}, (
                recordings,
                a.proc.tail(),
            )
            # ...and the recording goes on, as a new part, on B (the teacher published there)
            deadline = time.monotonic() + 10
            while len(recordings) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                recordings = await _recordings(database_url, session["id"])
            assert recordings[1:] == [{"status": "recording", "ended_reason": None}], recordings
            assert "node-a" not in _nodes(redis)
            assert redis.get(f"vtp:cluster:room:{room}") == b"node-b"
            print(f"drain: media again on B {media_again:.2f} s after 'reconnect'")
        finally:
            for client in (publisher, viewer):
                await client.close()
    redis.close()


def _spooled_media(node: Node) -> bool:
    """Whether the node's recording spool holds a media file its manifest lists."""
    for manifest in (node.state_dir / "recording-spool").glob("*/manifest.json"):
        try:
            files = json.loads(manifest.read_text()).get("files", [])
        except (OSError, ValueError):  # being replaced right now
            continue
        for entry in files:
            path = manifest.parent / entry["name"]
            if path.is_file() and path.stat().st_size > 0:
                return True
    return False


async def test_a_killed_node_s_clients_are_back_with_media_within_ten_seconds(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    redis = Redis.from_url(redis_url)
    async with (
        _two_nodes(tmp_path, database_url, redis_url) as (a, b),
        aiohttp.ClientSession() as http,
    ):
        teacher, student, session, room, call = await _live_class(http, a.url, database_url)
        await call(f"/api/v1/sessions/{session['id']}/recording/start")
        # both came through B's door, which relays them to A, where the class is
        publisher = Client(http, b.url, teacher["access_token"], room)
        viewer = Client(http, b.url, student["access_token"], room)
        try:
            await publisher.join()
            await publisher.publish()
            await viewer.join()
            assert publisher.node_url == viewer.node_url == b.url + WS_PATH
            await (await viewer.view()).wait_frames(20, within=20)
            # A's recorder opens a stream's file at its first keyframe: under load that
            # can come after the viewer's frames, and a kill before it leaves no media
            await _until(lambda: _spooled_media(a), 30, "A's recorder writing media")

            a.proc.proc.kill()  # SIGKILL: no goodbye
            killed = time.monotonic()
            for client in (publisher, viewer):
                assert client.conn is not None
                # B, their door, finds A dead (it missed a beat, and its port refuses
                # connections) and says so: node_gone, 1012
                assert await client.conn.closed(8) == 1012
                await client.drop_media()
            # they go back to their door, which places the room again once A has left
            await publisher.join(within=15)
            await publisher.publish()
            await viewer.join(within=15)
            frames = await viewer.view()
            await frames.wait_frames(1, within=15)
            back = (frames.first_frame_at or time.monotonic()) - killed
            assert publisher.node_url == viewer.node_url == b.url + WS_PATH
            assert redis.get(f"vtp:cluster:room:{room}") == b"node-b"
            print(f"kill -9: media again on B {back:.2f} s after the kill")
            assert back < 10, back

            # the recording A was making stays in its spool; A started again uploads it
            assert await _recordings(database_url, session["id"]) == [
                {"status": "recording", "ended_reason": None}
            ]
            a.start()
            await _until(a.healthy, 90, "A up again")

            async def uploaded() -> bool:
                found = await _recordings(database_url, session["id"])
                return bool(found) and found[0]["status"] == "available"

            deadline = time.monotonic() + 60
            while not await uploaded():
                assert time.monotonic() < deadline, a.proc.tail()
                await asyncio.sleep(0.2)
            # (cut, not stopped by its node: B did not start a part of its own)
            assert await _recordings(database_url, session["id"]) == [
                {"status": "available", "ended_reason": "cut"}
            ]
        finally:
            for client in (publisher, viewer):
                await client.close()
    redis.close()
