"""Two `vtp serve` nodes as two hosts: each in a network namespace of its own, with its own
address (a veth pair to this namespace), reaching the shared PostgreSQL and Redis of this
namespace through forwarders on its veth's far end. A teacher opens the class on node A;
a student arrives through node B's URL, whose node keeps the socket and relays its
signalling to A over Redis, and each decodes the other's video (aiortc peers in this
namespace, their media going straight to A's address). Skipped
when namespaces cannot be made here (no root, no iproute2/iptables, no permission)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
from netns import ClientNamespace, _missing
from sfu_api.ws_peers import BLUE, RED, Viewer, WsClient, assert_frames_show, publish, subscribe
from test_cluster_processes import _env, _health, _poll
from test_drain_processes import _live_class

pytestmark = pytest.mark.slow

WS_PATH = "/api/v1/sfu/ws"
HTTP_PORT = 8080  # each node on its own address: the same port on both


class Forward:
    """A TCP forwarder: ``listen`` (an address of this namespace) to ``target``."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.listen, self.target = listen, target
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, *self.listen)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)


def _moved(url: str, host: str, port: int) -> str:
    """``url`` with its host and port replaced (the forwarder's)."""
    parts = urlsplit(url)
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{auth}{host}:{port}"))


@pytest.fixture
def hosts() -> Iterator[tuple[ClientNamespace, ClientNamespace]]:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    made = [ClientNamespace(index) for index in (7, 8)]
    try:
        for namespace in made:
            try:
                namespace.create()
            except subprocess.CalledProcessError as exc:
                pytest.skip(f"cannot create a network namespace here: {exc.stderr!r}")
        yield made[0], made[1]
    finally:
        for namespace in made:
            namespace.delete()


class NodeInNamespace:
    def __init__(self, name: str, namespace: ClientNamespace, env: dict[str, str], log: Path):
        self.name = name
        self.address = namespace.client_address
        self.url = f"http://{self.address}:{HTTP_PORT}"
        self.log = log
        command = ["ip", "netns", "exec", namespace.name, sys.executable, "-m", "vtp", "serve"]
        self.proc = subprocess.Popen(
            [*command, "--host", self.address, "--port", str(HTTP_PORT)],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def healthy(self) -> bool:
        body = _health(self.url)
        return body is not None and body.get("node") == self.name

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # (stop at once: no drain)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextlib.asynccontextmanager
async def _nodes(
    hosts: tuple[ClientNamespace, ClientNamespace],
    tmp_path: Path,
    database_url: str,
    redis_url: str,
) -> AsyncIterator[tuple[NodeInNamespace, NodeInNamespace]]:
    pg, redis = urlsplit(database_url), urlsplit(redis_url)
    forwards: list[Forward] = []
    nodes: list[NodeInNamespace] = []
    try:
        for name, namespace in zip(("node-a", "node-b"), hosts, strict=True):
            # this namespace's end of the node's veth stands for the shared services
            gateway = namespace.host_address
            pg_forward = Forward((gateway, 0), (pg.hostname or "", pg.port or 5432))
            redis_forward = Forward((gateway, 0), (redis.hostname or "", redis.port or 6379))
            for forward in (pg_forward, redis_forward):
                await forward.start()
                forwards.append(forward)
            assert pg_forward.server is not None and redis_forward.server is not None
            pg_port = pg_forward.server.sockets[0].getsockname()[1]
            redis_port = redis_forward.server.sockets[0].getsockname()[1]
            env = _env(
                tmp_path,
                DATABASE_URL=_moved(database_url, gateway, pg_port),
                REDIS_URL=_moved(redis_url, gateway, redis_port),
                VTP_CLUSTER="true",
                VTP_NODE_ID=name,
                VTP_REGION=f"region-{name}",  # a room is placed on the node it opens on
                VTP_STATE_DIR=str(tmp_path / name),
                VTP_ICE_ADDRESSES=namespace.client_address,
            )
            nodes.append(NodeInNamespace(name, namespace, env, tmp_path / f"{name}.log"))
        for node in nodes:
            try:
                await asyncio.to_thread(_poll, node.healthy, 90, f"{node.name} up")
            except AssertionError:
                raise AssertionError(node.log.read_text()[-3000:]) from None
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            await asyncio.to_thread(node.stop)
        for forward in forwards:
            await forward.close()


async def _joined(http: aiohttp.ClientSession, door: str, token: str, room: str) -> Any:
    """Join through ``door``, following ``room_elsewhere``: (client, the URL joined at)."""
    url = door + WS_PATH
    for _ in range(3):
        ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
        conn = WsClient(ws)
        await conn.wait("authenticated")
        await conn.send(type="join", room=room, request_id="join")
        reply = await conn.wait(None, request_id="join")
        if reply["type"] == "joined":
            return conn, url
        await conn.close()
        assert reply["error"]["code"] == "room_elsewhere", reply
        url = reply["error"]["details"]["url"]
    raise AssertionError("sent elsewhere too often")


async def test_a_student_through_node_b_and_the_teacher_on_node_a_see_each_other(
    hosts: tuple[ClientNamespace, ClientNamespace],
    tmp_path: Path,
    database_url: str,
    redis_url: str,
) -> None:
    async with (
        _nodes(hosts, tmp_path, database_url, redis_url) as (a, b),
        aiohttp.ClientSession() as http,
    ):
        assert a.address != b.address
        teacher, student, _, room, _ = await _live_class(http, a.url, database_url)
        teacher_conn, teacher_at = await _joined(http, a.url, teacher["access_token"], room)
        student_conn, student_at = await _joined(http, b.url, student["access_token"], room)
        assert teacher_at == a.url + WS_PATH
        assert student_at == b.url + WS_PATH  # B kept the student's socket: it relays it
        pcs: list[Any] = []
        viewers: list[Viewer] = []
        try:
            pc, teacher_stream = await publish(teacher_conn, RED)
            pcs.append(pc)
            pc, student_stream = await publish(student_conn, BLUE)
            pcs.append(pc)
            student_sees, _ = await subscribe(student_conn, teacher_stream)
            teacher_sees, _ = await subscribe(teacher_conn, student_stream)
            viewers += [student_sees, teacher_sees]
            for viewer in viewers:
                await viewer.wait_frames(10, within=30)
            assert_frames_show(student_sees.frames, RED)
            assert_frames_show(teacher_sees.frames, BLUE)
            # the media went to A's own address (its ICE candidates), in A's namespace
            for viewer in viewers:
                transport = viewer.pc.getTransceivers()[0].receiver.transport
                remote = transport.transport.getRemoteCandidates()
                assert remote and all(c.ip == a.address for c in remote), remote
        finally:
            for viewer in viewers:
                await viewer.close()
            for pc in pcs:
                await pc.close()
            for conn in (teacher_conn, student_conn):
                await conn.close()
