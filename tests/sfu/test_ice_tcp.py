"""ICE over TCP on the single media port (vtp.sfu.icetcp), first without aiortc: RFC 4571
framing, checks routed by ufrag and answered on TCP streams, and the compiled send path
writing SRTP through a stream; then aiortc peers whose ICE runs over TCP only. Chromium
over ICE-TCP behind a UDP-dropping firewall is in test_reachability_browser.py."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import AsyncIterator

import pytest
from aioice import stun
from aiortc import RTCSessionDescription
from pylibsrtp import Policy, Session

from tests.sfu.clients import Publisher, Subscriber
from tests.sfu.ice_tcp_client import over_ice_tcp
from tests.sfu.test_forwarding import good_frames
from tests.sfu.test_single_port import _binding
from tests.support.waiting import eventually
from vtp.config import Config, load_config
from vtp.sfu import Sfu, fastpath, icelite, icerestart, icetcp
from vtp.sfu import aiortc_hooks as hooks
from vtp.sfu.rtp import parse_rtp

KEY = bytes(range(30))


def test_deframer_cuts_frames_across_reads() -> None:
    stream = icetcp.frame(b"abc") + icetcp.frame(b"") + icetcp.frame(b"x" * 1200)
    stream += icetcp.frame(b"tail")
    deframer = icetcp.Deframer()
    # byte by byte, then all at once: the same packets
    packets = [p for i in range(len(stream)) for p in deframer.feed(stream[i : i + 1])]
    assert packets == [b"abc", b"x" * 1200, b"tail"] and deframer.pending == 0
    assert deframer.feed(stream + stream[:4]) == [b"abc", b"x" * 1200, b"tail"]
    assert deframer.pending == 4  # a frame's start waits for the rest
    assert deframer.feed(stream[4:]) == [b"abc", b"x" * 1200, b"tail"]
    assert icetcp.frame(b"\x17" * 300)[:2] == struct.pack("!H", 300)
    with pytest.raises(ValueError):
        icetcp.frame(b"\x00" * 65536)


class TcpClient:
    """A client end of one ICE-TCP connection: framed writes and reads."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        host, port = writer.get_extra_info("sockname")[:2]
        self.addr = (str(host), int(port))

    @classmethod
    async def connect(cls, port: int) -> TcpClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def send(self, packet: bytes) -> None:
        self.writer.write(icetcp.frame(packet))

    async def receive(self, within: float = 2.0) -> bytes:
        header = await asyncio.wait_for(self.reader.readexactly(2), within)
        return await asyncio.wait_for(self.reader.readexactly(struct.unpack("!H", header)[0]), 2)

    async def check(
        self, conn: icelite.LiteConnection, nominate: bool = False, password: str | None = None
    ) -> stun.Message:
        self.send(_binding(conn.local_username, password or conn.local_password, nominate))
        response = stun.parse_message(await self.receive())
        assert response.message_class == stun.Class.RESPONSE
        assert response.check_message_integrity(conn.local_password.encode())
        return response

    async def closed_by_server(self, within: float = 3.0) -> bool:
        return await asyncio.wait_for(self.reader.read(), within) == b""

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def mux() -> AsyncIterator[icelite.UdpMux]:
    mux = icelite.UdpMux(("127.0.0.1",), 0, None, tcp=True)
    await mux.open()
    try:
        yield mux
    finally:
        mux.close()


async def test_candidates_list_udp_above_tcp_on_one_port(mux: icelite.UdpMux) -> None:
    conn = mux.connection()
    await conn.gather_candidates()
    port = mux.bound_port()
    udp, tcp = conn.local_candidates
    assert (udp.transport, udp.host, udp.port) == ("udp", "127.0.0.1", port)
    assert (tcp.transport, tcp.host, tcp.port, tcp.tcptype) == ("tcp", "127.0.0.1", port, "passive")
    assert udp.priority > tcp.priority
    assert tcp.to_sdp().endswith("typ host tcptype passive")
    # without tcp the mux opens no listener and offers UDP only
    plain = icelite.UdpMux(("127.0.0.1",), 0, None)
    await plain.open()
    try:
        only = plain.connection()
        await only.gather_candidates()
        assert [c.transport for c in only.local_candidates] == ["udp"]
        with pytest.raises(OSError):
            await TcpClient.connect(plain.bound_port())
    finally:
        plain.close()


async def test_checks_and_data_over_a_tcp_stream(
    mux: icelite.UdpMux, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = mux.bound_port()
    a, b = mux.connection(), mux.connection()
    x = await TcpClient.connect(port)
    y = await TcpClient.connect(port)
    try:
        response = await x.check(a, nominate=True)
        assert response.attributes["XOR-MAPPED-ADDRESS"] == x.addr
        await asyncio.wait_for(a.connect(), 2)
        stream = icetcp.stream_of(a._nominated[1].protocol)
        assert stream is not None and stream.connection is a
        assert a.remote_addr == x.addr
        # DTLS/SRTP frames, split anywhere by TCP, reach the connection whole
        record = icetcp.frame(b"\x17dtls-record")
        x.writer.write(record[:3])
        await x.writer.drain()
        x.writer.write(record[3:])
        assert await asyncio.wait_for(a.recv(), 2) == b"\x17dtls-record"
        await a.send(b"\x16server-hello")
        assert await x.receive() == b"\x16server-hello"
        # the UDP routing table does not hold TCP peers
        assert mux.stats()["latched"] == 0 and mux.stats()["tcp_streams"] == 2
        # a stream carries one connection: checks for another are not answered
        dropped = mux.dropped
        x.send(_binding(b.local_username, b.local_password, True))
        # wrong password on another stream: no answer, no binding, its data dropped
        y.send(_binding(a.local_username, "not-the-password-at-all", True))
        y.send(b"\x17spoofed")
        await eventually(lambda: mux.dropped == dropped + 3, 2)
        assert b.remote_addr is None and a.remote_addr == x.addr
        # the client closes the stream: the connection has no path until it checks again
        x.close()
        await eventually(lambda: a.remote_addr is None and not a._nominated, 2)
        await y.check(a, nominate=True)
        assert a.remote_addr == y.addr and a._nominated
        # a connection that closes closes its streams
        await a.close()
        assert await y.closed_by_server()
        # a TCP connection that sends no valid check is closed
        monkeypatch.setattr(icetcp, "BIND_TIMEOUT_S", 0.2)
        z = await TcpClient.connect(port)
        assert await z.closed_by_server()
        await eventually(lambda: mux.stats()["tcp_streams"] == 0, 2)
    finally:
        x.close()
        y.close()


async def test_compiled_send_path_writes_srtp_through_a_stream(mux: icelite.UdpMux) -> None:
    conn = mux.connection()
    client = await TcpClient.connect(mux.bound_port())
    tx = Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
    rx = Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_INBOUND))
    sink = hooks.srtp_sink(tx)
    try:
        await client.check(conn, nominate=True)
        stream = icetcp.stream_of(conn._nominated[1].protocol)
        assert stream is not None
        pipe = socket.socket(fileno=os.dup(stream.packet_pipe()))
        fastpath.aim_sink_connected(sink, pipe.fileno())
        down = fastpath.new_down(0xCAFEBABE, 96, 0, "", 0, 0)
        down.sink = sink
        down.highest_fseq = -1
        payloads = [bytes([i]) * (100 + i * 100) for i in range(10)]
        for i, payload in enumerate(payloads):
            assert fastpath.write(down, 0, 1000 + i, 90 * i, -1, 0, payload, len(payload)) > 0
        for i, payload in enumerate(payloads):
            packet = parse_rtp(bytes(rx.unprotect(await client.receive())), 0, 0)
            assert packet is not None
            assert (packet.ssrc, packet.payload) == (0xCAFEBABE, payload)
            assert packet.seq16 == (1000 + i + down.seq_offset) & 0xFFFF
        # RTCP from Python goes the same way (RawSender sends on the pipe without address)
        pipe.send(b"\x80\xc8rtcp")
        assert await client.receive() == b"\x80\xc8rtcp"
        # the stream goes away: the sink's sends fail (counted), nothing crashes
        client.close()
        await eventually(lambda: stream.transport is None, 2)
        assert fastpath.write(down, 0, 2000, 0, -1, 0, b"late", 4) == 0
        assert sink.send_errors >= 1
        pipe.close()
    finally:
        fastpath.stop_sink(sink)
        client.close()


@pytest.fixture
def sfu_config() -> Config:
    return load_config(
        ice_addresses=["127.0.0.1"], ice_udp_port=0, room_grace_s=0.5, peer_timeout_s=5
    )


async def test_aiortc_peers_publish_and_view_over_ice_tcp_only(sfu: Sfu) -> None:
    """aiortc peers whose ICE runs over TCP only (tests/sfu/ice_tcp_client.py): the
    publisher's media comes in over a stream, the subscriber's goes out through the
    compiled send path into a stream, and the subscriber decodes the pattern."""
    room = sfu.room("tcp-only")
    pub = Publisher(0)
    over_ice_tcp(pub.pc)
    sub = Subscriber()
    try:
        stream_id = await pub.publish(room.join("teacher"))
        peer = room.join("student")
        offer = await peer.subscribe(stream_id)
        await sub.pc.setRemoteDescription(RTCSessionDescription(offer.offer_sdp, "offer"))
        over_ice_tcp(sub.pc)
        await sub.pc.setLocalDescription(await sub.pc.createAnswer())
        await peer.answer(offer.id, sub.pc.localDescription.sdp)
        await eventually(lambda: len(good_frames(sub, pub)) >= 20, 15)
        await eventually(lambda: sub.received["audio"].audio_frames > 10, 5)
        assert sfu.mux is not None
        assert sfu.mux.stats()["tcp_streams"] == 2 and sfu.mux.stats()["latched"] == 0
        for connection in [c for p in room.peers.values() for c in p.connections.values()]:
            assert connection.sender is not None
            assert icetcp.stream_of(connection.sender._pair.protocol) is not None
            assert connection.sender.send_errors == 0
    finally:
        await asyncio.gather(pub.close(), sub.pc.close())
    await eventually(lambda: sfu.mux is not None and sfu.mux.stats()["tcp_streams"] == 0, 10)


async def test_ipv4_and_ipv6_on_one_port_and_announce_per_family() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    # wildcards of both families side by side on one port (IPv6 sockets are v6-only)
    both = icelite.UdpMux(("0.0.0.0", "::"), 0, None, tcp=True)
    await both.open()
    both.close()
    # an announced IPv4 address stands in for the IPv4 socket only
    mux = icelite.UdpMux(("127.0.0.1", "::1"), 0, "203.0.113.9", tcp=True)
    await mux.open()
    try:
        conn = mux.connection()
        await conn.gather_candidates()
        port = mux.bound_port()
        assert [(c.transport, c.host, c.port) for c in conn.local_candidates] == [
            ("udp", "203.0.113.9", port),
            ("udp", "::1", port),
            ("tcp", "203.0.113.9", port),
            ("tcp", "::1", port),
        ]
        # a check over IPv6 TCP is answered with the client's IPv6 address
        reader, writer = await asyncio.open_connection("::1", port)
        client = TcpClient(reader, writer)
        try:
            response = await client.check(conn, nominate=True)
            assert response.attributes["XOR-MAPPED-ADDRESS"] == client.addr
            assert conn.remote_addr == client.addr and client.addr[0] == "::1"
        finally:
            client.close()
    finally:
        mux.close()


async def test_ice_restart_takes_new_credentials_and_keeps_the_path(
    mux: icelite.UdpMux,
) -> None:
    """vtp.sfu.icelite.LiteConnection.restart (the restart-ice message): checks with the
    old credentials are no longer answered, the new ones are, and the path stays until
    the client nominates another (on_moved then: a publication asks for a keyframe)."""
    conn = mux.connection()
    x = await TcpClient.connect(mux.bound_port())
    try:
        await x.check(conn, nominate=True)
        old_ufrag, old_password = conn.local_username, conn.local_password
        ufrag, password = conn.restart()
        assert (ufrag, password) == (conn.local_username, conn.local_password)
        assert ufrag != old_ufrag and password != old_password
        assert conn._nominated and conn.remote_addr == x.addr  # media keeps flowing
        dropped = mux.dropped
        x.send(_binding(old_ufrag, old_password, True))
        await eventually(lambda: mux.dropped == dropped + 1, 2)
        moves: list[tuple[str, int] | None] = []
        conn.on_moved = lambda: moves.append(conn.remote_addr)
        await x.check(conn, nominate=True)  # (the new credentials)
        assert moves == []  # the same path
        y = await TcpClient.connect(mux.bound_port())  # the client's new network
        try:
            await y.check(conn, nominate=True)
            assert conn.remote_addr == y.addr and moves == [y.addr]
        finally:
            y.close()
    finally:
        x.close()
    sdp = "v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\nm=audio\r\n"
    assert icerestart.with_credentials(sdp, "wxyz", "p" * 22) == (
        "v=0\r\na=ice-ufrag:wxyz\r\na=ice-pwd:" + "p" * 22 + "\r\nm=audio\r\n"
    )
