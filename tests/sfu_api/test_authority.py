"""Authority follows open sockets: every action that takes a right away closes (or
downgrades) the user's SFU peers and classroom channel within 2 s, in this process and
in another one sharing the Redis; tokens that expire without renewal close them.

Real server, PostgreSQL and Redis; aiortc peers that decode the teacher's video. Each
test prints ``authority-timing <action>: <ms>`` (run with ``-s`` to see the figures).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from helpers import JWT_TEST_SECRET, bearer, enroll, new_course, ok, scheduled_session
from ws_peers import (
    BLUE,
    RED,
    WsClient,
    config,  # noqa: F401  (loopback ICE for the app under test)
    connect,
    publish,
    publisher_offer,
    subscribe,
)

from tests.support.waiting import eventually
from vtp.app import create_app
from vtp.appkeys import CONFIG, REDIS, TOKENS
from vtp.auth.tokens import TokenService
from vtp.signalling.members import MEMBERS

LIMIT_S = 2.0


def timing(action: str, seconds: float) -> None:
    print(f"\nauthority-timing {action}: {seconds * 1000:.0f} ms")
    assert seconds < LIMIT_S, f"{action} took {seconds:.2f} s"


async def live_class(
    client: Any,
    accounts: Any,
    *,
    students_may_publish: bool = True,
    member_role: str = "student",
    host_role: str = "teacher",
) -> dict[str, Any]:
    """A started course session: a teacher (owner), a member (``member_role``), and the
    host (the teacher, or a TA who scheduled and started it)."""
    teacher = await accounts.with_role("teacher")
    member = await accounts.with_role("student")
    course = await new_course(client, teacher, "Authority")
    await enroll(client, teacher, course, member, role=member_role)
    host = teacher if host_role == "teacher" else member
    session = await scheduled_session(
        client, host, course, title="Rights", students_may_publish=students_may_publish
    )
    return {"teacher": teacher, "member": member, "course": course, "session": session}


async def open_channel(client: Any, session_id: str, token: str) -> WsClient:
    """The classroom live channel, authenticated and ready."""
    ws = await client.ws_connect(f"/api/v1/sessions/{session_id}/live")
    await ws.send_json({"type": "auth", "token": token})
    channel = WsClient(ws)
    await channel.wait("ready")
    return channel


def peers_of(client: Any, user: dict[str, Any]) -> list[Any]:
    members = client.app[MEMBERS]
    return [
        m
        for room in list(members._by_room)
        for m in members.in_room(room)
        if str(m.user_id) == user["user"]["id"]
    ]


# --- every revoking action closes the sockets --------------------------------------------


async def _logout(client: Any, c: dict[str, Any], t_live: WsClient) -> None:
    await ok(client, "POST", "/api/v1/auth/logout", c["member"])


async def _refresh_reuse(client: Any, c: dict[str, Any], t_live: WsClient) -> None:
    body = {"refresh_token": c["member"]["refresh_token"]}
    assert (await client.post("/api/v1/auth/refresh", json=body)).status == 200
    assert (await client.post("/api/v1/auth/refresh", json=body)).status == 401


async def _site_role_change(client: Any, c: dict[str, Any], t_live: WsClient) -> None:
    await ok(
        client,
        "PATCH",
        f"/api/v1/users/{c['member']['user']['id']}/role",
        c["admin"],
        json={"role": "teacher"},
    )


async def _tokens_revoked(client: Any, c: dict[str, Any], t_live: WsClient) -> None:
    # What a password change or an account disable calls.
    user_id = uuid.UUID(c["member"]["user"]["id"])
    await client.app[TOKENS].revoke_user_tokens(user_id, reason="account disabled")


async def _unenrol(client: Any, c: dict[str, Any], t_live: WsClient) -> None:
    path = f"/api/v1/courses/{c['course']['id']}/enrollments/{c['member']['user']['id']}"
    await ok(client, "DELETE", path, c["teacher"])


async def _removal(client: Any, c: dict[str, Any], t_live: WsClient) -> None:
    await t_live.send(type="remove", user_id=c["member"]["user"]["id"], reason="Phones away")


async def _session_end(client: Any, c: dict[str, Any], t_live: WsClient) -> None:
    await ok(client, "POST", f"/api/v1/sessions/{c['session']['id']}/end", c["teacher"])


ACTIONS = {
    # action: (its effect, SFU WebSocket close code, live channel close code)
    "logout": (_logout, 4401, 4401),
    "refresh-reuse": (_refresh_reuse, 4401, 4401),
    "site-role-change": (_site_role_change, 4401, 4401),
    "password-change-or-disable": (_tokens_revoked, 4401, 4401),
    "unenrol": (_unenrol, 4403, 4403),
    "teacher-removal": (_removal, 4403, 4403),
    "session-end": (_session_end, 4403, 1000),
}


@pytest.mark.parametrize("action", list(ACTIONS))
async def test_revoking_action_closes_the_users_sockets(
    client: Any, accounts: Any, action: str
) -> None:
    effect, sfu_code, live_code = ACTIONS[action]
    c = await live_class(client, accounts)
    c["admin"] = await accounts.with_role("admin")
    room = c["session"]["room_name"]
    teacher = await connect(client, c["teacher"]["access_token"])
    await teacher.request("join", "joined", room=room)
    teacher_pc, stream_id = await publish(teacher, RED)
    t_live = await open_channel(client, c["session"]["id"], c["teacher"]["access_token"])

    student = await connect(client, c["member"]["access_token"])
    await student.request("join", "joined", room=room)
    await student.wait("stream-added", stream_id=stream_id)
    viewer, _ = await subscribe(student, stream_id)
    await viewer.wait_frames(5)
    s_live = await open_channel(client, c["session"]["id"], c["member"]["access_token"])
    await t_live.wait("participant-joined")
    publication = client.app[MEMBERS].in_room(room)[0].peer.room.publication(stream_id)
    assert publication is not None

    start = time.monotonic()
    await effect(client, c, t_live)
    codes = await asyncio.gather(student.closed(), s_live.closed())
    closed_s = time.monotonic() - start
    await eventually(lambda: not peers_of(client, c["member"]), 5)
    gone_s = time.monotonic() - start
    assert codes == [sfu_code, live_code], (action, codes, student.seen, s_live.seen)
    left = [m for m in student.seen if m["type"] == "left"]
    assert left and left[0]["room"] == room, student.seen
    assert all(track["subscribers"] == 0 for track in publication.stats()["tracks"])
    timing(f"{action} -> sockets closed", closed_s)
    timing(f"{action} -> SFU peer gone", gone_s)
    for conn in (teacher, t_live):
        await conn.close()
    await viewer.close()
    await teacher_pc.close()


# --- downgrades: the publish right and the presenter's powers -----------------------------


async def test_publishing_closed_mid_class_downgrades_students_to_viewers(
    client: Any, accounts: Any
) -> None:
    c = await live_class(client, accounts, students_may_publish=True)
    room = c["session"]["room_name"]
    teacher = await connect(client, c["teacher"]["access_token"])
    await teacher.request("join", "joined", room=room)
    teacher_pc, teacher_stream = await publish(teacher, RED)
    student = await connect(client, c["member"]["access_token"])
    joined = await student.request("join", "joined", room=room)
    assert joined["may_publish"] is True
    student_pc, student_stream = await publish(student, BLUE)
    await teacher.wait("stream-added", stream_id=student_stream)
    watcher, _ = await subscribe(teacher, student_stream)
    await watcher.wait_frames(5)
    await student.wait("stream-added", stream_id=teacher_stream)
    viewer, _ = await subscribe(student, teacher_stream)
    await viewer.wait_frames(5)

    start = time.monotonic()
    await ok(
        client,
        "PATCH",
        f"/api/v1/sessions/{c['session']['id']}",
        c["teacher"],
        json={"students_may_publish": False},
    )
    grant = await student.wait("grant")
    granted_s = time.monotonic() - start
    await teacher.wait("stream-removed", stream_id=student_stream)
    removed_s = time.monotonic() - start
    assert grant["may_publish"] is False and grant["role"] == "viewer"
    assert grant["reason"] == "publishing closed"
    timing("students_may_publish off -> grant", granted_s)
    timing("students_may_publish off -> publication closed", removed_s)

    # A new publication is refused on every path; the student still watches.
    _, offer = await publisher_offer(BLUE)
    await student.send(type="publish", sdp=offer, label="camera", request_id="p2")
    await student.error("forbidden", request_id="p2")
    headers = bearer(c["member"]["access_token"])
    resp = await client.post(
        f"/api/v1/sfu/rooms/{room}/transports",
        json={"direction": "send", "sdp": offer},
        headers=headers,
    )
    assert resp.status == 403, await resp.text()
    resp = await client.post(
        f"/api/v1/whip/{room}", data=offer, headers={**headers, "Content-Type": "application/sdp"}
    )
    assert resp.status == 403, await resp.text()
    await viewer.wait_frames(10)
    await student.request("ping", "pong")

    # Opening the floor again lets them publish without rejoining.
    await ok(
        client,
        "PATCH",
        f"/api/v1/sessions/{c['session']['id']}",
        c["teacher"],
        json={"students_may_publish": True},
    )
    assert (await student.wait("grant"))["may_publish"] is True
    again_pc, _ = await publish(student, BLUE)
    for closable in (teacher, student):
        await closable.close()
    for pc in (teacher_pc, student_pc, again_pc):
        await pc.close()
    await viewer.close()
    await watcher.close()


async def test_a_ta_demoted_while_hosting_loses_the_presenters_powers(
    client: Any, accounts: Any
) -> None:
    c = await live_class(
        client, accounts, students_may_publish=False, member_role="ta", host_role="ta"
    )
    ta = c["member"]
    room = c["session"]["room_name"]
    student = await accounts.with_role("student")
    await ok(
        client,
        "POST",
        f"/api/v1/courses/{c['course']['id']}/enrollments",
        c["teacher"],
        json={"user_id": student["user"]["id"]},
    )
    ta_sfu = await connect(client, ta["access_token"])
    assert (await ta_sfu.request("join", "joined", room=room))["role"] == "presenter"
    ta_pc, ta_stream = await publish(ta_sfu, RED)
    # live (DTLS up) before the demotion, or there is no stream to see removed
    await ta_sfu.wait("stream-added", stream_id=ta_stream)
    ta_live = await open_channel(client, c["session"]["id"], ta["access_token"])
    s_live = await open_channel(client, c["session"]["id"], student["access_token"])
    await ta_live.wait("participant-joined")

    start = time.monotonic()
    await ok(
        client,
        "PATCH",
        f"/api/v1/courses/{c['course']['id']}/enrollments/{ta['user']['id']}",
        c["teacher"],
        json={"role": "student"},
    )
    role = await ta_live.wait("role", user_id=ta["user"]["id"])
    role_s = time.monotonic() - start
    grant = await ta_sfu.wait("grant")
    grant_s = time.monotonic() - start
    await ta_sfu.wait("stream-removed", stream_id=ta_stream)
    assert role["role"] == "viewer"
    assert (grant["role"], grant["may_publish"]) == ("viewer", False)
    assert (await s_live.wait("role", user_id=ta["user"]["id"]))["role"] == "viewer"
    timing("course role change -> live channel role", role_s)
    timing("course role change -> SFU grant", grant_s)

    # The host's controls are gone: no removal, no recording.
    await ta_live.send(type="remove", user_id=student["user"]["id"])
    await ta_live.error("forbidden")
    await ta_live.send(type="record", action="start")
    await ta_live.error("forbidden")
    await s_live.send(type="ping")
    await s_live.wait("pong")  # still in class
    for conn in (ta_sfu, ta_live, s_live):
        await conn.close()
    await ta_pc.close()


# --- HTTP sessions: REST transports, WHIP, WHEP --------------------------------------------


async def test_unenrolment_ends_rest_whip_and_whep_sessions(client: Any, accounts: Any) -> None:
    c = await live_class(client, accounts, students_may_publish=True)
    room = c["session"]["room_name"]
    teacher = await connect(client, c["teacher"]["access_token"])
    await teacher.request("join", "joined", room=room)
    teacher_pc, stream_id = await publish(teacher, RED)
    await teacher.wait("stream-added", stream_id=stream_id)
    headers = bearer(c["member"]["access_token"])
    whip_pc, offer = await publisher_offer(BLUE)
    resp = await client.post(
        f"/api/v1/whip/{room}", data=offer, headers={**headers, "Content-Type": "application/sdp"}
    )
    assert resp.status == 201, await resp.text()
    whip_location = resp.headers["Location"]
    whep_pc = RTCPeerConnection()
    whep_pc.addTransceiver("video", direction="recvonly")
    await whep_pc.setLocalDescription(await whep_pc.createOffer())
    resp = await client.post(
        f"/api/v1/whep/{room}/{stream_id}",
        data=whep_pc.localDescription.sdp,
        headers={**headers, "Content-Type": "application/sdp"},
    )
    assert resp.status == 201, await resp.text()
    whep_location = resp.headers["Location"]
    resp = await client.post(
        f"/api/v1/sfu/rooms/{room}/transports",
        json={"direction": "recv", "stream_id": stream_id},
        headers=headers,
    )
    assert resp.status == 201, await resp.text()
    assert {m.via for m in peers_of(client, c["member"])} == {"whip", "whep", "rest"}

    start = time.monotonic()
    await _unenrol(client, c, teacher)
    await eventually(lambda: not peers_of(client, c["member"]), 5)
    timing("unenrol -> REST, WHIP and WHEP sessions ended", time.monotonic() - start)
    for location in (whip_location, whep_location):
        assert (await client.delete(location, headers=headers)).status == 404
    await teacher.close()
    for pc in (teacher_pc, whip_pc, whep_pc):
        await pc.close()


# --- token expiry on a long socket ---------------------------------------------------------


def short_token(client: Any, user: dict[str, Any], ttl_s: int) -> str:
    service = TokenService(
        client.app[REDIS],
        JWT_TEST_SECRET,
        issuer=client.app[CONFIG].jwt_issuer,
        access_ttl_s=ttl_s,
        refresh_ttl_s=60,
    )
    return service.issue(uuid.UUID(user["user"]["id"]), user["user"]["role"]).access_token


async def test_an_expired_token_closes_sockets_unless_renewed(client: Any, accounts: Any) -> None:
    c = await live_class(client, accounts)
    room = c["session"]["room_name"]
    student = c["member"]
    ttl = 2
    # Not renewed: both sockets close with 4401 token_expired once the token expires.
    token = short_token(client, student, ttl)
    expires = (await client.app[TOKENS].verify_access(token)).expires_at
    lapsing = await connect(client, token)
    await lapsing.request("join", "joined", room=room)
    lapsing_live = await open_channel(client, c["session"]["id"], token)
    # Renewed: an auth message with a fresh token before expiry keeps them open.
    token = short_token(client, student, ttl)
    renewed = await connect(client, token)
    await renewed.request("join", "joined", room=room)
    renewed_live = await open_channel(client, c["session"]["id"], token)
    fresh = student["access_token"]
    await renewed.request("auth", "authenticated", token=fresh)
    await renewed_live.send(type="auth", token=fresh)
    renewal = await renewed_live.wait("authenticated")
    assert renewal["expires_at"] > time.time() + 60

    assert await lapsing.closed(within=ttl + 5) == 4401
    assert await lapsing_live.closed(within=5) == 4401
    await lapsing.error("token_expired")
    await lapsing_live.error("token_expired")
    timing("token expiry -> sockets closed", max(0.0, time.time() - expires))
    assert time.time() >= expires
    await renewed.request("ping", "pong")
    await renewed_live.send(type="ping")
    await renewed_live.wait("pong")
    assert not renewed.ws.closed and not renewed_live.ws.closed
    for conn in (renewed, renewed_live):
        await conn.close()


# --- another process sharing the Redis ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_a_revocation_reaches_sockets_of_another_vtp_process(
    client: Any,
    accounts: Any,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    aiohttp_client: Any,
) -> None:
    """Sockets on a second app instance and on a ``vtp serve`` process, revoked through
    the first instance."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "VTP_JWT_SECRET": JWT_TEST_SECRET,
        "VTP_STATE_DIR": str(tmp_path / "other"),
        "VTP_ICE_ADDRESSES": "127.0.0.1",
        "VTP_LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "other.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "vtp", "serve", "--port", str(port)),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        second = await aiohttp_client(create_app(client.app[CONFIG]))
        c = await live_class(client, accounts)
        other = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(other) as http:
            deadline = time.monotonic() + 60
            while True:
                assert proc.returncode is None, log.read_text()[-3000:]
                try:
                    async with http.get("/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                await asyncio.sleep(0.2)
            room = c["session"]["room_name"]
            token = c["member"]["access_token"]
            sockets = []
            for where in (second, http):
                sfu = await connect(where, token)
                await sfu.request("join", "joined", room=room)
                sockets.append(sfu)
                sockets.append(await open_channel(where, c["session"]["id"], token))

            start = time.monotonic()
            await _unenrol(client, c, sockets[0])
            codes = await asyncio.gather(*(s.closed() for s in sockets))
            timing(
                "unenrol in process 1 -> sockets closed in processes 2 and 3",
                time.monotonic() - start,
            )
            assert codes == [4403, 4403, 4403, 4403], codes
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
