"""Direct tests of every private aiortc/aioice/pylibsrtp hook the SFU uses: an upgrade
that moves any of them fails here first."""

from __future__ import annotations

import ast
import asyncio
import inspect
import struct
import time
from pathlib import Path
from typing import Any

import aioice.ice
import aiortc
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCSessionDescription
from aiortc.rtcdtlstransport import RTCDtlsTransport

from tests.sfu.clients import client_configuration
from tests.support.media import PatternTrack
from tests.support.waiting import eventually
from vtp.sfu import aiortc_hooks as hooks
from vtp.sfu import fastpath
from vtp.sfu.arrival import ReceiveTimes
from vtp.sfu.icelite import LiteConnection, UdpMux


def test_pinned_versions() -> None:
    assert hooks.installed_versions() == hooks.PINNED
    hooks.check_versions()


def test_aiortc_still_calls_the_hooked_methods() -> None:
    recv_next = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)" in recv_next
    assert "await self._handle_rtcp_data(data)" in recv_next
    assert "self._tx_srtp.protect(data)" in inspect.getsource(RTCDtlsTransport._send_rtp)
    assert "await self._send_rtcp(packets)" in inspect.getsource(RTCRtpSender._run_rtcp)
    assert "get_encoder(codec)" in inspect.getsource(RTCRtpSender._next_encoded_frame)
    assert "self.__track.recv()" in inspect.getsource(RTCRtpSender._next_encoded_frame)
    assert hasattr(RTCRtpReceiver, "_handle_rtp_packet")


def test_pylibsrtp_protect_has_the_signature_the_c_send_path_calls() -> None:
    """fanout.h calls libsrtp 2's ``srtp_protect(ctx, void *rtp, int *len)`` through a
    pointer taken from pylibsrtp: a pylibsrtp built on libsrtp 3 (``const uint8_t *rtp,
    size_t len, uint8_t *srtp, size_t *srtp_len, size_t mki``) would be called with the
    wrong arguments and corrupt memory instead of failing, so this fails first."""
    from pylibsrtp._binding import ffi, lib

    protect = ffi.typeof(lib.srtp_protect)
    assert protect.kind == "function"
    assert [arg.cname for arg in protect.args] == ["struct srtp_ctx_t_ *", "void *", "int *"]
    assert protect.result.cname == "srtp_err_status_t"
    assert ffi.sizeof("srtp_err_status_t") == ffi.sizeof("int")  # returned as int in C
    header = (Path(fastpath.__file__).parent / "fanout.h").read_text()
    assert "typedef int (*vtp_protect_fn)(void *ctx, void *rtp, int *len);" in header


def test_the_lite_connection_has_what_aiortc_uses_of_an_ice_connection() -> None:
    """Every attribute aiortc's ICE gatherer and transport read on their aioice
    connection exists on :class:`vtp.sfu.icelite.LiteConnection` (which replaces it in
    the one-port mode): an aiortc upgrade that uses a new one fails here, not in a
    classroom."""
    import aiortc.rtcicetransport

    tree = ast.parse(inspect.getsource(aiortc.rtcicetransport))
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "_connection"
    }
    assert {"recv", "send", "connect", "local_username"} <= used  # the walk found them
    lite = LiteConnection(UdpMux(("127.0.0.1",), 0, None), ReceiveTimes())
    missing = sorted(name for name in used if not hasattr(lite, name))
    assert not missing, f"aiortc uses {missing} of its ICE connection; LiteConnection lacks them"


async def _connected_pair(
    video: bool = True, silence: bool = False
) -> tuple[RTCPeerConnection, RTCPeerConnection]:
    a = RTCPeerConnection(client_configuration())
    b = RTCPeerConnection(client_configuration())
    a.addTrack(PatternTrack((10, 20)))
    if silence:  # as the SFU does: before the sender starts
        hooks.silence_sender_rtcp(a.getSenders()[0])
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    await eventually(lambda: a.connectionState == "connected" and b.connectionState == "connected")
    return a, b


async def test_take_over_media_and_raw_sender() -> None:
    a, b = await _connected_pair()
    try:
        received_rtp: list[bytes] = []
        received_rtcp: list[bytes] = []
        lags: list[int] = []  # handled - arrived, ns
        dtls_b = hooks.dtls_transports(b)[0]
        times = ReceiveTimes()

        def rtp(data: bytes, arrival_ns: int) -> None:
            received_rtp.append(data)
            if arrival_ns:  # (0 for the datagram aiortc was waiting for when stamping began)
                lags.append(time.monotonic_ns() - arrival_ns)

        hooks.take_over_media(dtls_b, rtp, received_rtcp.append, times)
        hooks.stamp_arrivals(dtls_b, times)
        assert hooks.media_taken_over(dtls_b)
        # a's own encoder keeps sending: those packets now reach our callback, decrypted
        await eventually(lambda: len(lags) > 5)
        assert all(p[0] >> 6 == 2 for p in received_rtp)
        # each with the kernel's arrival time: before it was handled, and not long before
        assert all(0 <= lag < 2_000_000_000 for lag in lags), lags

        dtls_a = hooks.dtls_transports(a)[0]
        sender = hooks.RawSender(dtls_a)
        assert sender.sink.fd >= 0 and sender.remote_address() is not None
        # RTP through the compiled send path with the transport's own SRTP session
        down = fastpath.new_down(0x01020304, 111, 0, "", 0, 0)
        down.sink = sender.sink
        down.seq_offset = 4000
        assert fastpath.write(down, 0, 242, 99, -1, 0, b"hello-sfu", 9) > 21  # + auth tag
        rr = struct.pack("!BBHI", 0x80, 201, 1, 0x0A0B0C0D)
        assert sender.send_rtcp(rr) > len(rr)
        expected = struct.pack("!BBHII", 0x80, 111, 4242, 99, 0x01020304) + b"hello-sfu"
        await eventually(lambda: expected in received_rtp and rr in received_rtcp)
        # the sink follows aioice's nominated pair: a change of pair re-aims it
        ice = dtls_a.transport._connection
        pair = ice._nominated[1]
        ice._nominated[1] = aioice.ice.CandidatePair(pair.protocol, pair.remote_candidate)
        assert sender.sink.fd >= 0 and sender._pair is ice._nominated[1]
        assert fastpath.write(down, 0, 243, 99, -1, 0, b"second", 6) > 0
        second = struct.pack("!BBHII", 0x80, 111, 4243, 99, 0x01020304) + b"second"
        await eventually(lambda: second in received_rtp)
        sender.close()
        assert sender.sink.fd == -1
        assert fastpath.write(down, 0, 244, 99, -1, 0, b"x", 1) == 0
        assert sender.send_rtcp(rr) == 0
        # a sender whose ICE connection closes stops by itself
        other = hooks.RawSender(dtls_a)
        assert other.sink.fd >= 0
        await a.close()
        assert other.sink.fd == -1 and other.remote_address() is None
    finally:
        await asyncio.gather(a.close(), b.close())
    # once closed, the ICE agent has released its sockets
    assert hooks.ice_connection_open_sockets(hooks.dtls_transports(a)[0]) == 0


async def test_raw_sender_refuses_unconnected_transport() -> None:
    pc = RTCPeerConnection(client_configuration())
    pc.addTransceiver("video")
    try:
        dtls = hooks.dtls_transports(pc)[0]
        try:
            hooks.RawSender(dtls)
        except ConnectionError:
            pass
        else:
            raise AssertionError("RawSender accepted an unconnected transport")
    finally:
        await pc.close()


async def test_negotiated_parameters_and_ssrc() -> None:
    a, b = await _connected_pair()
    try:
        transceiver = a.getTransceivers()[0]
        codecs = hooks.negotiated_codecs(transceiver)
        assert codecs[0].mime_type == "video/vp8" and codecs[0].clock_rate == 90000
        sdp = a.localDescription.sdp
        assert f"a=rtpmap:{codecs[0].payload_type} VP8/90000" in sdp
        ext = hooks.negotiated_extensions(transceiver)
        assert ext["urn:ietf:params:rtp-hdrext:sdes:mid"] > 0
        assert f"a=ssrc:{hooks.sender_ssrc(transceiver.sender)} " in sdp
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_silence_sender_rtcp() -> None:
    # what the replacement relies on: the task aiortc starts, and what stop() waits for
    run_rtcp = inspect.getsource(RTCRtpSender._run_rtcp)
    assert "self.__rtcp_started.set()" in run_rtcp and "self.__rtcp_exited.set()" in run_rtcp
    send = inspect.getsource(RTCRtpSender.send)
    assert "self.__rtcp_task = asyncio.ensure_future(self._run_rtcp())" in send
    stop = inspect.getsource(RTCRtpSender.stop)
    assert "self.__rtcp_started.wait()" in stop and "self.__rtcp_exited.wait()" in stop
    a, b = await _connected_pair(silence=True)
    try:
        seen: list[bytes] = []
        media: list[bytes] = []
        hooks.take_over_media(
            hooks.dtls_transports(b)[0],
            lambda data, _arrival: media.append(data),
            seen.append,
            ReceiveTimes(),
        )
        sender = a.getSenders()[0]
        await sender._send_rtcp([])  # the replacement is a no-op coroutine
        seen.clear()
        await asyncio.sleep(2.2)  # aiortc sends an SR every 0.5-1.5 s
        assert not [p for p in seen if p[1] == 200], "aiortc's sender report got through"
        # the media still flows, and the sender still stops cleanly
        assert len(media) > 10
        await asyncio.wait_for(sender.stop(), 5)
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_configure_gathering_addresses_and_announce() -> None:
    pc = RTCPeerConnection(client_configuration())
    pc.addTransceiver("audio", direction="sendonly")
    try:
        dtls = hooks.dtls_transports(pc)[0]
        hooks.configure_gathering(dtls, ["127.0.0.1"], "203.0.113.7")
        await pc.setLocalDescription(await pc.createOffer())
        candidates = [ln for ln in pc.localDescription.sdp.splitlines() if "candidate:" in ln]
        assert candidates and all(" 203.0.113.7 " in c for c in candidates)
        assert hooks.ice_connection_open_sockets(dtls) == 1
    finally:
        await pc.close()


async def test_on_dtls_state() -> None:
    a = RTCPeerConnection(client_configuration())
    b = RTCPeerConnection(client_configuration())
    a.addTrack(PatternTrack((10, 20)))
    states: list[str] = []
    await a.setLocalDescription(await a.createOffer())
    hooks.on_dtls_state(hooks.dtls_transports(a)[0], states.append)
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(RTCSessionDescription(b.localDescription.sdp, "answer"))
    try:
        await eventually(lambda: "connected" in states)
    finally:
        await asyncio.gather(a.close(), b.close())
    assert aiortc.__version__ == "1.16.0"


RANGE = (47100, 47102)


async def test_configure_gathering_port_range() -> None:
    pcs = [RTCPeerConnection(client_configuration()) for _ in range(3)]
    try:
        for pc in pcs:
            pc.addTransceiver("video", direction="sendonly")
            hooks.configure_gathering(
                hooks.dtls_transports(pc)[0], ["127.0.0.1"], None, (47100, 47102)
            )
            await pc.setLocalDescription(await pc.createOffer())
        ports = set()
        for pc in pcs:
            lines = [ln for ln in pc.localDescription.sdp.splitlines() if "candidate:" in ln]
            assert len(lines) == 1
            ports.add(int(lines[0].split()[5]))
        assert ports == {47100, 47101, 47102}  # three connections, three ports of the range
        extra = RTCPeerConnection(client_configuration())
        extra.addTransceiver("video", direction="sendonly")
        hooks.configure_gathering(
            hooks.dtls_transports(extra)[0], ["127.0.0.1"], None, (47100, 47102)
        )
        try:
            try:
                await extra.setLocalDescription(await extra.createOffer())
            except ConnectionError:
                pass
            else:
                raise AssertionError("bound outside a full port range")
        finally:
            await extra.close()
    finally:
        for pc in pcs:
            await pc.close()


async def test_tolerant_consent(monkeypatch: Any) -> None:
    assert "self.query_consent()" in inspect.getsource(aioice.ice.Connection.connect)
    monkeypatch.setattr(hooks, "CONSENT_INTERVAL_S", 0.3)
    monkeypatch.setattr(hooks, "CONSENT_RETRANSMISSIONS", 1)
    monkeypatch.setattr(hooks, "CONSENT_CHECK_S", 1.5)  # 0.5 + 1 s with one retransmission
    a = RTCPeerConnection(client_configuration())
    b = RTCPeerConnection(client_configuration())
    a.addTrack(PatternTrack((10, 20)))
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    dtls_b = hooks.dtls_transports(b)[0]
    hooks.tolerant_consent(dtls_b, timeout_s=4.0)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    try:
        await eventually(lambda: b.connectionState == "connected")
        # answers to b's checks arrive 0.8 s late: aioice alone (one try, 0.5 s) would
        # count failures; retransmitted checks still get their answer
        loop = asyncio.get_running_loop()
        for protocol in dtls_b.transport._connection._protocols:
            real = protocol.datagram_received

            def late(data: bytes, addr: Any, real: Any = real) -> None:
                if data[:2] == b"\x01\x01":  # STUN binding success response
                    loop.call_later(0.8, real, data, addr)
                else:
                    real(data, addr)

            protocol.datagram_received = late
        await asyncio.sleep(3.0)
        assert b.connectionState == "connected"
        # a vanishes: consent expires
        for transceiver in a.getTransceivers():
            for protocol in transceiver.receiver.transport.transport._connection._protocols:
                protocol.transport.close()
        await eventually(lambda: b.connectionState in ("closed", "failed"), 10)
    finally:
        await asyncio.gather(a.close(), b.close())


def _rsa_dtls_server() -> Any:
    """A DTLS server context holding an RSA certificate (as GStreamer's webrtcbin does)."""
    import datetime

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from OpenSSL import SSL

    from tests.sfu.certs import self_signed_builder

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    cert = self_signed_builder(key, "webrtcbin", now - day, now + day, serial=1).sign(
        key, hashes.SHA256()
    )
    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.use_certificate(cert)
    ctx.use_privatekey(key)
    ctx.set_verify(SSL.VERIFY_PEER, lambda *args: True)
    ctx.set_tlsext_use_srtp(b"SRTP_AES128_CM_SHA1_80")
    return ctx


def _handshake(client_ctx: Any, server_ctx: Any) -> str:
    """Run a DTLS handshake in memory; the cipher chosen, or the error's text."""
    from OpenSSL import SSL

    client, server = SSL.Connection(client_ctx), SSL.Connection(server_ctx)
    client.set_connect_state()
    server.set_accept_state()
    for _ in range(20):
        for conn, other in ((client, server), (server, client)):
            try:
                conn.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error as exc:
                return f"error: {exc}"
            try:
                while True:
                    other.bio_write(conn.bio_read(65536))
            except SSL.WantReadError:
                pass
        cipher = client.get_cipher_name()
        if cipher and server.get_cipher_name():
            return str(cipher)
    return "error: no progress"


async def test_accept_rsa_peers_dtls_handshake_with_an_rsa_server() -> None:
    """aiortc as DTLS client (VTP answers a=setup:active) against a server whose
    certificate is RSA: "no shared cipher" with aiortc's list, a handshake with ours."""
    from aiortc.rtcdtlstransport import SRTP_AES128_CM_SHA1_80

    pc = RTCPeerConnection(client_configuration())
    try:
        pc.addTransceiver("video", direction="sendonly")
        dtls = hooks.dtls_transports(pc)[0]
        certificate = dtls._RTCDtlsTransport__local_certificate  # type: ignore[attr-defined]
        profiles = [SRTP_AES128_CM_SHA1_80]
        refused = _handshake(certificate._create_ssl_context(profiles), _rsa_dtls_server())
        assert refused.startswith("error") and "no shared cipher" in refused, refused
        hooks.accept_rsa_peers(dtls)
        hooks.accept_rsa_peers(dtls)  # idempotent
        chosen = _handshake(certificate._create_ssl_context(profiles), _rsa_dtls_server())
        assert chosen == "ECDHE-RSA-AES128-GCM-SHA256", chosen
    finally:
        await pc.close()
