"""Every peer connection on one UDP port (VTP_ICE_UDP_PORT): the SFU as an ICE-lite agent,
with real aiortc peers (Chromium runs through it in test_browser.py)."""

from __future__ import annotations

import asyncio
import os
import socket
import struct

import pytest
from aioice import stun
from aiortc import RTCSessionDescription

from tests.sfu.clients import EventLog, Publisher, Subscriber
from tests.sfu.test_forwarding import good_frames
from tests.support.waiting import eventually
from vtp.config import Config, load_config
from vtp.sfu import Sfu, events, icelite
from vtp.sfu import aiortc_hooks as hooks
from vtp.sfu.connection import Connection
from vtp.sfu.ice import IceSettings


@pytest.fixture
def sfu_config() -> Config:
    return load_config(
        ice_addresses=["127.0.0.1"], ice_udp_port=0, room_grace_s=0.5, peer_timeout_s=5
    )


def server_port(sfu: Sfu) -> int:
    assert sfu.mux is not None
    return sfu.mux.bound_port()


def candidate_ports(sdp: str) -> set[int]:
    return {int(ln.split()[5]) for ln in sdp.splitlines() if ln.startswith("a=candidate:")}


async def test_publish_and_subscribe_through_one_port(sfu: Sfu, event_log: EventLog) -> None:
    port = server_port(sfu)
    room = sfu.room("one-port")
    pub = Publisher(0)
    stream_id = await pub.publish(room.join("teacher"))
    subs = [Subscriber() for _ in range(3)]
    try:
        for i, sub in enumerate(subs):
            await sub.subscribe(room.join(f"s{i}"), stream_id)
        # WHEP-style too: the client offers, the server answers
        whep = Subscriber()
        subs.append(whep)
        whep.pc.addTransceiver("video", direction="recvonly")
        whep.pc.addTransceiver("audio", direction="recvonly")
        await whep.pc.setLocalDescription(await whep.pc.createOffer())
        conn = await room.join("whep").subscribe_answer(stream_id, whep.pc.localDescription.sdp)
        await whep.pc.setRemoteDescription(RTCSessionDescription(conn.answer_sdp, "answer"))
        await eventually(lambda: all(len(good_frames(s, pub)) >= 20 for s in subs), 15)
        assert all(s.received["audio"].audio_frames > 10 for s in subs)
        # every server SDP names the one port and says ice-lite
        server_sdps = [pub.pc.remoteDescription.sdp] + [s.pc.remoteDescription.sdp for s in subs]
        for sdp in server_sdps:
            assert "a=ice-lite" in sdp and candidate_ports(sdp) == {port}
        # no connection holds a socket of its own
        connections: list[Connection] = [
            c for p in room.peers.values() for c in p.connections.values()
        ]
        assert len(connections) == 5
        for c in connections:
            for dtls in hooks.dtls_transports(c.pc):
                assert hooks.ice_connection_open_sockets(dtls) == 0
        assert sfu.mux is not None and sfu.mux.stats()["latched"] == 5
    finally:
        await asyncio.gather(pub.close(), *(s.close() for s in subs))
    # closed connections leave the routing tables
    await eventually(lambda: sfu.mux is not None and sfu.mux.stats()["connections"] == 0, 10)


def _binding(ufrag: str, password: str | None, use_candidate: bool = False) -> bytes:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{ufrag}:intruder"
    request.attributes["PRIORITY"] = 1
    request.attributes["ICE-CONTROLLING"] = 1
    if use_candidate:
        request.attributes["USE-CANDIDATE"] = None
    if password is not None:
        request.add_message_integrity(password.encode())
    return bytes(request)


async def test_strangers_cannot_take_over_a_connection(sfu: Sfu, event_log: EventLog) -> None:
    port = server_port(sfu)
    room = sfu.room("intruders")
    pub = Publisher(1, audio=False)
    stream_id = await pub.publish(room.join("teacher"))
    sub = Subscriber()
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    intruder.bind(("127.0.0.1", 0))
    intruder.settimeout(0.5)
    try:
        await sub.subscribe(room.join("student"), stream_id)
        await eventually(lambda: len(good_frames(sub, pub)) >= 10, 10)
        ufrag = next(
            ln.split(":", 1)[1]
            for ln in sub.pc.remoteDescription.sdp.splitlines()
            if ln.startswith("a=ice-ufrag:")
        )
        assert sfu.mux is not None
        dropped = sfu.mux.dropped
        attempts = [
            _binding(ufrag, "wrong-password-wrong-password", use_candidate=True),
            _binding(ufrag, None, use_candidate=True),  # no MESSAGE-INTEGRITY
            _binding("nobody", "x" * 22, use_candidate=True),
            os.urandom(200),  # neither STUN nor from a latched address
            b"\x80" + os.urandom(100),  # "SRTP" from a stranger
            struct.pack("!HHI", 1, 500, 0x2112A442) + os.urandom(12),  # lying length
        ]
        for data in attempts:
            intruder.sendto(data, ("127.0.0.1", port))
        await eventually(lambda: sfu.mux.dropped >= dropped + len(attempts), 5, "all dropped")
        with pytest.raises(TimeoutError):
            intruder.recv(2048)  # nothing is answered
        start = len(sub.video().frames)
        await eventually(lambda: len(sub.video().frames) >= start + 15, 5)
        assert room.peers["student"].connections and sfu.mux.stats()["latched"] == 2
    finally:
        intruder.close()
        await asyncio.gather(pub.close(), sub.close())


async def test_a_client_that_stops_checking_is_dropped(sfu: Sfu, event_log: EventLog) -> None:
    assert sfu.mux is not None
    # above aioice's check interval (5 s +- 20%): the publisher, still checking, stays
    sfu.mux.consent_timeout_s = 8.0
    sfu.peer_timeout_s = 120  # so that only the ICE-lite consent can notice
    room = sfu.room("consent")
    pub = Publisher(2, audio=False)
    stream_id = await pub.publish(room.join("teacher"))
    sub = Subscriber()
    try:
        student = room.join("student")
        sub_id = await sub.subscribe(student, stream_id)
        server_side = student.connections[sub_id]
        await eventually(lambda: len(good_frames(sub, pub)) >= 5, 10)
        # the client's ICE agent vanishes without a word (no DTLS close, no more checks)
        client_ice = hooks.dtls_transports(sub.pc)[0].transport._connection
        for protocol in client_ice._protocols:
            protocol.transport.close()
        client_ice._query_consent_task.cancel()
        closed = await event_log.wait_for(
            lambda e: isinstance(e, events.SubscriptionClosed) and e.subscription_id == sub_id,
            within=15,
        )
        # (the ICE-lite agent closing ends aiortc's DTLS receive loop first)
        assert closed is not None
        assert server_side.close_reason in ("dtls closed", "connection failed")
        assert room.publication(stream_id) is not None  # the others go on
    finally:
        await asyncio.gather(pub.close(), sub.close())


async def test_one_port_and_a_port_range_are_exclusive() -> None:
    with pytest.raises(ValueError, match="ice_udp_port"):
        Sfu(load_config(ice_udp_port=40000, ice_port_min=41000, ice_port_max=41010))


def test_one_port_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of the box one port, 40000 (the mode with ICE-TCP and ICE restart); a port
    range, or VTP_ICE_UDP_PORT set empty, asks for a port per connection; --workers
    gives worker i port 40000 + i."""
    from vtp.workers import worker_env

    monkeypatch.delenv("VTP_ICE_UDP_PORT", raising=False)  # (tests/conftest.py sets 0)
    default = load_config()
    assert default.ice_udp_port == 40000
    assert IceSettings.from_config(default).udp_port == 40000
    ranged = load_config(ice_port_min=41000, ice_port_max=41010)
    assert ranged.ice_udp_port is None
    assert IceSettings.from_config(ranged).port_range == (41000, 41010)
    monkeypatch.setenv("VTP_ICE_PORT_MIN", "41000")
    monkeypatch.setenv("VTP_ICE_PORT_MAX", "41010")
    assert load_config().ice_udp_port is None
    monkeypatch.setenv("VTP_ICE_UDP_PORT", "40000")  # both named: refused, as before
    with pytest.raises(ValueError, match="ice_udp_port"):
        IceSettings.from_config(load_config())
    for name in ("VTP_ICE_PORT_MIN", "VTP_ICE_PORT_MAX"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("VTP_ICE_UDP_PORT", "")
    assert load_config().ice_udp_port is None
    assert IceSettings.from_config(load_config()).port_range is None
    monkeypatch.delenv("VTP_ICE_UDP_PORT")
    envs = [worker_env(load_config(), i, 3, {}) for i in range(3)]
    assert [e["VTP_ICE_UDP_PORT"] for e in envs] == ["40000", "40001", "40002"]


class Client:
    """A bare UDP client speaking just enough ICE to drive the mux."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)

    @property
    def addr(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return (str(host), int(port))

    async def check(
        self, port: int, conn: icelite.LiteConnection, nominate: bool = False
    ) -> stun.Message:
        self.sock.sendto(
            _binding(conn.local_username, conn.local_password, nominate), ("127.0.0.1", port)
        )
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 2048), 2)
        response = stun.parse_message(data)
        assert response.message_class == stun.Class.RESPONSE
        assert response.check_message_integrity(conn.local_password.encode())
        return response


async def test_mux_latches_on_checks_and_moves_only_on_nomination() -> None:
    mux = icelite.UdpMux(("127.0.0.1",), 0, None)
    await mux.open()
    x, y = Client(), Client()
    try:
        port = mux.bound_port()
        a, b = mux.connection(), mux.connection()
        await a.gather_candidates()
        assert [(c.host, c.port) for c in a.local_candidates] == [("127.0.0.1", port)]
        # a valid check latches the address (so DTLS can start), no nomination yet
        response = await x.check(port, a)
        assert response.attributes["XOR-MAPPED-ADDRESS"] == x.addr
        assert a.remote_addr == x.addr and not a._nominated
        x.sock.sendto(b"\x17dtls-record", ("127.0.0.1", port))
        assert await asyncio.wait_for(a.recv(), 2) == b"\x17dtls-record"
        await x.check(port, a, nominate=True)
        await asyncio.wait_for(a.connect(), 2)
        assert a._nominated[1].remote_addr == x.addr
        # a valid check from elsewhere without USE-CANDIDATE does not move it
        await y.check(port, a)
        assert a.remote_addr == x.addr
        # nominated from elsewhere: it moves, and the old address is no longer heard
        await y.check(port, a, nominate=True)
        assert a.remote_addr == y.addr and a._nominated[1].remote_addr == y.addr
        dropped = mux.dropped
        x.sock.sendto(b"\x17from-the-old-address", ("127.0.0.1", port))
        await asyncio.sleep(0.1)
        assert mux.dropped == dropped + 1
        # another connection's client reusing that address takes it over
        await y.check(port, b, nominate=True)
        assert b.remote_addr == y.addr and a.remote_addr is None and not a._nominated
        await a.close()
        assert mux.stats()["connections"] == 1
        with pytest.raises(ConnectionError):
            await a.recv()
    finally:
        x.sock.close()
        y.sock.close()
        mux.close()
    assert b.closed  # closing the mux closes what it served


async def test_announced_and_wildcard_candidates() -> None:
    announced = icelite.UdpMux(("127.0.0.1",), 0, "203.0.113.9")
    wildcard = icelite.UdpMux((), 0, None)
    await announced.open()
    await wildcard.open()
    try:
        conn = announced.connection()
        await conn.gather_candidates()
        assert [(c.host, c.port) for c in conn.local_candidates] == [
            ("203.0.113.9", announced.bound_port())
        ]
        every = wildcard.connection()
        await every.gather_candidates()  # (tests list 127.0.0.1 as the host's address)
        assert [(c.host, c.port) for c in every.local_candidates] == [
            ("127.0.0.1", wildcard.bound_port())
        ]
    finally:
        announced.close()
        wildcard.close()


async def test_a_taken_port_is_a_clear_startup_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        sfu = Sfu(load_config(ice_addresses=["127.0.0.1"], ice_udp_port=port))
        with pytest.raises(OSError, match=f"cannot open UDP 127.0.0.1 port {port}"):
            await sfu.start()
        await sfu.close()
