"""Every contact VTP's SFU has with aiortc/aioice/pylibsrtp *private* internals.

aiortc 1.16.0, aioice 0.13.0 and pylibsrtp 1.0.0 are pinned; ``tests/sfu/test_aiortc_hooks.py``
checks each hook directly so that an upgrade fails loudly. Nothing else in ``vtp.sfu``
touches an underscore attribute of those libraries.

What is taken over, per object instance (never by patching classes):

* ``RTCDtlsTransport._handle_rtp_data`` / ``_handle_rtcp_data`` - decrypted RTP/RTCP go to
  the SFU instead of aiortc's router, receiver, jitter buffer and decoder.
* ``RTCRtpSender._send_rtcp`` - silenced: aiortc's sender would send sender reports with
  zero counters; the SFU writes its own.
* ``aioice.Connection.gather_candidates`` - host candidates on configured addresses
  (aioice leaves out 127.0.0.1), optionally announcing a public address, optionally in a
  UDP port range.
* ``aioice.Connection.query_consent`` - consent checks that tolerate a loaded event loop.
* ``RTCCertificate._create_ssl_context`` (on the transport's own certificate) - the DTLS
  cipher list also offers ECDHE-RSA suites, so a peer that is the DTLS server with an RSA
  certificate (GStreamer's webrtcbin, answered ``a=setup:active``) shares a cipher.
* the ICE agent itself, when every connection shares one UDP port: aiortc's gatherer and
  transport get a :class:`vtp.sfu.icelite.LiteConnection` and advertise ICE-lite.
* sending: the DTLS transport's SRTP session (pylibsrtp's ``srtp_t`` and libsrtp's
  ``srtp_protect``) and the ICE connection's nominated pair (followed through
  ``aioice.Connection._nominated``) are handed to the compiled send path
  (:class:`RawSender`, :mod:`vtp.sfu.fastpath`), skipping aiortc's three awaits and
  the interpreter per packet.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aioice
import aioice.ice
import aioice.stun
import aiortc
import pylibsrtp
from aiortc import (
    RTCDtlsTransport,
    RTCIceParameters,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from pylibsrtp._binding import ffi as _srtp_ffi
from pylibsrtp._binding import lib as _srtp_lib

from vtp.sfu import fastpath, icetcp
from vtp.sfu.arrival import ReceiveTimes, SocketClock
from vtp.sfu.ice import host_candidate

logger = logging.getLogger(__name__)

PINNED = {"aiortc": "1.16.0", "aioice": "0.13.0", "pylibsrtp": "1.0.0"}


def installed_versions() -> dict[str, str]:
    return {
        "aiortc": str(aiortc.__version__),
        "aioice": str(aioice.__version__),
        "pylibsrtp": str(pylibsrtp.__version__),
    }


def check_versions() -> None:
    """Raise if the installed libraries are not the versions these hooks were written for."""
    installed = installed_versions()
    if installed != PINNED:
        raise RuntimeError(f"vtp.sfu.aiortc_hooks needs {PINNED}, found {installed}")


# --- incoming media ---------------------------------------------------------------------


def take_over_media(
    dtls: RTCDtlsTransport,
    on_rtp: Callable[[bytes, int], None],
    on_rtcp: Callable[[bytes], None],
    receive_times: ReceiveTimes,
) -> None:
    """Route this transport's decrypted RTP and RTCP to the SFU (synchronous callbacks);
    RTP comes with its arrival time (monotonic ns) as ``receive_times`` recorded it
    (aiortc's own ``arrival_time_ms`` is taken in the event loop: see vtp.sfu.arrival)."""

    async def handle_rtp(data: bytes, arrival_time_ms: int) -> None:
        on_rtp(data, receive_times.current)

    async def handle_rtcp(data: bytes) -> None:
        on_rtcp(data)

    dtls._handle_rtp_data = handle_rtp  # type: ignore[method-assign]
    dtls._handle_rtcp_data = handle_rtcp  # type: ignore[method-assign]


def media_taken_over(dtls: RTCDtlsTransport) -> bool:
    return "_handle_rtp_data" in vars(dtls) and "_handle_rtcp_data" in vars(dtls)


# --- outgoing media ----------------------------------------------------------------------


class _NominationWatch(dict[int, Any]):
    """aioice's ``Connection._nominated`` with a callback on every change, so senders
    follow (re-)nomination and closing without checking on every packet. aioice only
    sets items and clears this dict (aioice 0.13.0, tested)."""

    def __init__(self, initial: dict[int, Any]) -> None:
        super().__init__(initial)
        self.listeners: list[Callable[[], None]] = []

    def __setitem__(self, key: int, value: Any) -> None:
        super().__setitem__(key, value)
        self._changed()

    def clear(self) -> None:
        super().clear()
        self._changed()

    def _changed(self) -> None:
        for listener in list(self.listeners):
            listener()


def _watch_nomination(dtls: RTCDtlsTransport, listener: Callable[[], None]) -> _NominationWatch:
    conn = dtls.transport._connection
    watch = conn._nominated
    if not isinstance(watch, _NominationWatch):
        watch = conn._nominated = _NominationWatch(watch)
    watch.listeners.append(listener)
    return watch


def _address(cdata: Any) -> int:
    return int(_srtp_ffi.cast("uintptr_t", cdata))


def srtp_sink(session: pylibsrtp.Session) -> Any:
    """A :mod:`vtp.sfu.fastpath` sink protecting with this pylibsrtp session (its
    ``srtp_t`` and libsrtp's ``srtp_protect``). The caller keeps ``session`` alive for as
    long as the sink may send."""
    return fastpath.new_sink(
        _address(_srtp_ffi.addressof(_srtp_lib, "srtp_protect")), _address(session._srtp[0])
    )


class RawSender:
    """Sends on a connected DTLS transport without aiortc's await chain.

    RTP goes through :mod:`vtp.sfu.fastpath`: its :attr:`sink` holds the transport's own
    libsrtp session (``srtp_protect`` on pylibsrtp's ``srtp_t``) and a duplicate of the
    nominated ICE pair's UDP socket with the pair's remote address - or, when the pair is
    an ICE-TCP stream, a duplicate of that stream's packet pipe (:mod:`vtp.sfu.icetcp`
    frames what arrives there onto the TCP connection). RTCP (a few packets a second)
    goes through pylibsrtp and the same socket from Python. The sink follows
    re-nomination when aioice changes its nominated pair and stops when the ICE
    connection closes or :meth:`close` is called; the pylibsrtp session is kept alive as
    long as this object, so the sink never points at a freed session."""

    __slots__ = (
        "_addr",
        "_nominated",
        "_pair",
        "_protect_rtcp",
        "_session",
        "_sock",
        "closed",
        "rtcp_errors",
        "sink",
    )

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        if dtls.state != "connected" or dtls._tx_srtp is None:
            raise ConnectionError("DTLS transport is not connected")
        session = dtls._tx_srtp
        self._session = session
        self._protect_rtcp: Callable[[bytes], bytes] = session.protect_rtcp
        self.sink = srtp_sink(session)
        self._pair: Any = None
        self._sock: socket.socket | None = None
        self._addr: Any = None
        self.closed = False
        self.rtcp_errors = 0
        self._nominated: _NominationWatch = _watch_nomination(dtls, self._follow)
        self._follow()

    def _follow(self) -> None:
        """Aim the sink at the nominated pair (or stop it if there is none)."""
        pair = None if self.closed else self._nominated.get(1)
        if pair is self._pair and pair is not None:
            return
        transport = pair.protocol.transport if pair is not None else None
        if pair is None or transport is None or transport.is_closing():
            self._pair = None
            fastpath.stop_sink(self.sink)
            self._drop_socket()
            return
        stream = icetcp.stream_of(pair.protocol)
        if stream is not None:
            # ICE-TCP: packets go into the stream's packet pipe, which frames them
            sock = socket.socket(fileno=os.dup(stream.packet_pipe()))
            sock.setblocking(False)
            fastpath.aim_sink_connected(self.sink, sock.fileno())
            addr = None
        else:
            fd = transport.get_extra_info("socket").fileno()
            sock = socket.socket(fileno=os.dup(fd))
            sock.setblocking(False)
            host, port = pair.remote_addr[:2]
            if not fastpath.aim_sink(self.sink, sock.fileno(), str(host), int(port)):
                sock.close()
                fastpath.stop_sink(self.sink)
                return
            addr = pair.remote_addr
        self._drop_socket()  # the sink no longer uses the old descriptor
        self._sock = sock
        self._addr = addr
        self._pair = pair

    def _drop_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @property
    def send_errors(self) -> int:
        sink = self.sink
        return int(sink.send_errors + sink.protect_errors + sink.oversize) + self.rtcp_errors

    def send_rtcp(self, data: bytes) -> int:
        sock = self._sock
        if sock is None:
            return 0
        try:
            protected = self._protect_rtcp(data)
            if self._addr is None:  # an ICE-TCP stream's packet pipe
                sock.send(protected)
            else:
                sock.sendto(protected, self._addr)
        except (OSError, pylibsrtp.Error, ValueError):
            self.rtcp_errors += 1
            return 0
        return len(protected)

    def remote_address(self) -> tuple[str, int] | None:
        pair = self._pair
        if pair is None:
            return None
        host, port = pair.remote_addr[:2]
        return (str(host), int(port))

    def close(self) -> None:
        self.closed = True
        listeners = self._nominated.listeners
        if self._follow in listeners:
            listeners.remove(self._follow)
        self._follow()


# --- subscriber-side senders -------------------------------------------------------------


def silence_sender_rtcp(sender: RTCRtpSender) -> None:
    """Stop aiortc's sender from sending its own (zero-counter) SR/SDES/BYE, and from
    running the once-a-second task that builds them (per subscriber, that task was the
    largest Python cost left next to forwarding). Install before the sender starts."""

    async def send_rtcp(packets: list[Any]) -> None:
        return None

    async def run_rtcp() -> None:
        # RTCRtpSender.stop() waits for these two events of the task it replaces
        sender._RTCRtpSender__rtcp_started.set()  # type: ignore[attr-defined]
        sender._RTCRtpSender__rtcp_exited.set()  # type: ignore[attr-defined]

    sender._send_rtcp = send_rtcp  # type: ignore[method-assign]
    sender._run_rtcp = run_rtcp  # type: ignore[method-assign]


def sender_ssrc(sender: RTCRtpSender) -> int:
    return int(sender._ssrc)


# --- negotiated parameters ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NegotiatedCodec:
    payload_type: int
    mime_type: str  # lower case, e.g. "video/vp8"
    clock_rate: int
    channels: int | None


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[NegotiatedCodec]:
    return [
        NegotiatedCodec(
            int(c.payloadType or 0), str(c.mimeType).lower(), int(c.clockRate), c.channels
        )
        for c in transceiver._codecs
    ]


def negotiated_extensions(transceiver: RTCRtpTransceiver) -> dict[str, int]:
    return {str(e.uri): int(e.id) for e in transceiver._headerExtensions}


def dtls_transports(pc: RTCPeerConnection) -> list[RTCDtlsTransport]:
    """The distinct DTLS transports of a peer connection's transceivers."""
    seen: list[RTCDtlsTransport] = []
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls not in seen:
            seen.append(dtls)
    return seen


def stamp_arrivals(dtls: RTCDtlsTransport, receive_times: ReceiveTimes) -> None:
    """Record the kernel's arrival time of each datagram aioice queues for this transport
    in ``receive_times`` (ICE-lite connections do it themselves).

    aioice's ``StunProtocol.datagram_received`` hands data to ``Connection.
    data_received`` right after reading it, so the socket's last stamp is that datagram's;
    aiortc's ICE transport bound ``_recv`` to ``Connection.recv`` at construction
    (aioice 0.13.0, aiortc 1.16.0: tested)."""
    ice = dtls.transport
    conn = ice._connection
    if "data_received" in vars(conn):
        return
    queue_data = conn.data_received
    receive = ice._recv
    clocks: dict[int, SocketClock] = {}  # by the receiving protocol's socket descriptor

    def data_received(data: bytes, component: int) -> None:
        queue_data(data, component)
        pair = conn._nominated.get(component)
        transport = pair.protocol.transport if pair is not None else None
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            receive_times.queued(time.monotonic_ns())
            return
        fd = sock.fileno()
        clock = clocks.get(fd)
        if clock is None:
            clock = clocks[fd] = SocketClock(fd)
        receive_times.queued(clock.last_ns())

    async def recv() -> bytes:
        data: bytes = await receive()
        receive_times.taken()
        return data

    conn.data_received = data_received  # type: ignore[method-assign]
    ice._recv = recv


# --- ICE gathering ------------------------------------------------------------------------


RECEIVE_BUFFER = 262144  # a peer connection's own socket (one stream or one subscriber)


def configure_gathering(
    dtls: RTCDtlsTransport,
    addresses: Sequence[str],
    announce: str | None,
    port_range: tuple[int, int] | None = None,
    receive_buffer: int = RECEIVE_BUFFER,
) -> None:
    """Gather host candidates on ``addresses`` (all interfaces aioice finds if empty;
    loopback allowed when listed), bound inside ``port_range`` if given, announcing
    ``announce`` in their place; their sockets get ``receive_buffer`` bytes of receive
    buffer (what a stall of the event loop can absorb before the kernel drops)."""
    if not addresses and not announce and not port_range:
        return
    conn = dtls.transport.iceGatherer._connection
    if "gather_candidates" in vars(conn):
        return  # already configured

    async def gather_candidates() -> None:
        if conn._local_candidates_start:
            return
        conn._local_candidates_start = True
        wanted = list(addresses) or aioice.ice.get_host_addresses(
            use_ipv4=conn._use_ipv4, use_ipv6=conn._use_ipv6
        )
        if port_range is None:
            candidates = await conn.get_component_candidates(component=1, addresses=wanted)
        else:
            candidates = [await _bind_in_range(conn, a, port_range) for a in wanted]
        for protocol in conn._protocols:
            sock = protocol.transport.get_extra_info("socket") if protocol.transport else None
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        if announce:
            for candidate in candidates:
                if candidate.type == "host":
                    candidate.host = announce
        conn._local_candidates += candidates
        conn._local_candidates_end = True

    conn.gather_candidates = gather_candidates  # type: ignore[method-assign]


async def _bind_in_range(conn: Any, address: str, port_range: tuple[int, int]) -> Any:
    """aioice's host-candidate setup, on a free port inside ``port_range``."""
    loop = asyncio.get_running_loop()
    low, high = port_range
    ports = list(range(low, high + 1))
    random.shuffle(ports)
    for port in ports:
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: aioice.ice.StunProtocol(conn), local_addr=(address, port)
            )
        except OSError:
            continue
        host, bound = transport.get_extra_info("sockname")[:2]
        protocol.local_candidate = host_candidate(host, bound)
        conn._protocols.append(protocol)
        return protocol.local_candidate
    raise ConnectionError(f"no free UDP port in {low}-{high} on {address}")


CONSENT_INTERVAL_S = 5.0
CONSENT_RETRANSMISSIONS = 2  # each check waits 0.5 + 1 + 2 s for an answer
CONSENT_CHECK_S = 3.5  # the longest one check waits


def tolerant_consent(dtls: RTCDtlsTransport, timeout_s: float = 25.0) -> None:
    """RFC 7675 consent checks that survive a busy event loop.

    aioice sends each check once and gives up after 0.5 s: when the SFU is loaded, media
    queued ahead of the STUN answer on the same socket makes six checks in a row "fail"
    and aioice closes a healthy connection (measured: a publisher dropped at 300
    subscribers). These checks are retransmitted, and consent expires ``timeout_s``
    after the last answer (RFC 7675: at most 30 s): the last check is timed to give up
    at that moment. Install before the connection starts (aioice looks the coroutine
    up on the instance in ``connect()``)."""
    conn = dtls.transport._connection
    if "query_consent" in vars(conn):
        return

    async def query_consent() -> None:
        answered = time.monotonic()
        while True:
            left = answered + timeout_s - CONSENT_CHECK_S - time.monotonic()
            pause = CONSENT_INTERVAL_S * (0.8 + 0.4 * random.random())
            await asyncio.sleep(max(0.0, min(pause, left)))
            for pair in list(conn._nominated.values()):
                request = conn.build_request(pair, nominate=False)
                try:
                    await pair.protocol.request(
                        request,
                        pair.remote_addr,
                        integrity_key=(conn.remote_password or "").encode("utf8"),
                        retransmissions=CONSENT_RETRANSMISSIONS,
                    )
                    answered = time.monotonic()
                except aioice.stun.TransactionError:
                    pass
                if time.monotonic() - answered >= timeout_s - 0.5:
                    logger.info("ICE consent expired (%s)", pair.remote_addr)
                    conn._query_consent_task = None
                    await conn.close()
                    return

    conn.query_consent = query_consent  # type: ignore[method-assign]


def use_lite_connection(dtls: RTCDtlsTransport, connection: Any) -> None:
    """Run this transport's ICE over ``connection`` (a :class:`vtp.sfu.icelite.
    LiteConnection`) instead of the aioice agent aiortc made, and advertise ICE-lite.

    aiortc's gatherer and transport each hold the agent, and the transport bound its
    ``recv``/``send`` at construction: all four are replaced. Call before gathering
    (setLocalDescription) - the discarded agent has not opened a socket yet."""
    ice = dtls.transport
    gatherer = ice.iceGatherer
    gatherer._connection = connection
    ice._connection = connection
    ice._recv = connection.recv
    ice._send = connection.send

    def local_parameters() -> RTCIceParameters:
        return RTCIceParameters(
            usernameFragment=connection.local_username,
            password=connection.local_password,
            iceLite=True,
        )

    gatherer.getLocalParameters = local_parameters  # type: ignore[method-assign]


def lite_connection(dtls: RTCDtlsTransport) -> Any:
    """The :class:`vtp.sfu.icelite.LiteConnection` this transport's ICE runs over (set
    by :func:`use_lite_connection`), or None for aioice's own agent."""
    connection = dtls.transport._connection
    return connection if hasattr(connection, "restart") else None


def ice_connection_open_sockets(dtls: RTCDtlsTransport) -> int:
    """How many UDP sockets the transport's ICE agent holds (0 once released)."""
    return len(dtls.transport._connection._protocols)


# aiortc's list (ECDHE-ECDSA only, fine while its own ECDSA certificate serves) plus the
# ECDHE-RSA suites a DTLS server holding an RSA certificate needs: as the DTLS client VTP
# must offer what the server's certificate can sign. Kept in aiortc's order of strength.
DTLS_CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    b"ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA"
)


def accept_rsa_peers(dtls: RTCDtlsTransport) -> None:
    """Let this transport's DTLS handshake succeed with peers holding RSA certificates.

    VTP answers offers with ``a=setup:active`` (aiortc's choice), so a client that offered
    ``actpass`` is the DTLS server and its certificate decides the suite; aiortc 1.16
    offers ECDHE-ECDSA suites only, and GStreamer 1.22's webrtcbin (RSA certificate)
    failed with "no shared cipher". Install before the handshake starts."""
    certificate = dtls._RTCDtlsTransport__local_certificate  # type: ignore[attr-defined]
    if "_create_ssl_context" in vars(certificate):
        return
    create = certificate._create_ssl_context

    def create_ssl_context(srtp_profiles: list[Any]) -> Any:
        ctx = create(srtp_profiles)
        ctx.set_cipher_list(DTLS_CIPHERS)
        return ctx

    certificate._create_ssl_context = create_ssl_context


def on_dtls_state(dtls: RTCDtlsTransport, callback: Callable[[str], None]) -> None:
    """Call ``callback(state)`` on every DTLS state change (public event, kept here
    beside the other transport hooks for one place to audit)."""

    def changed() -> None:
        callback(dtls.state)

    dtls.on("statechange", changed)
