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
  (aioice leaves out 127.0.0.1), optionally announcing a public address.
* sending: the DTLS transport's SRTP session and the ICE connection's nominated pair are
  used directly (:class:`RawSender`), skipping three awaits per packet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aioice
import aioice.ice
import aiortc
import pylibsrtp
from aiortc import RTCDtlsTransport, RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver

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
    on_rtp: Callable[[bytes], None],
    on_rtcp: Callable[[bytes], None],
) -> None:
    """Route this transport's decrypted RTP and RTCP to the SFU (synchronous callbacks)."""

    async def handle_rtp(data: bytes, arrival_time_ms: int) -> None:
        on_rtp(data)

    async def handle_rtcp(data: bytes) -> None:
        on_rtcp(data)

    dtls._handle_rtp_data = handle_rtp  # type: ignore[method-assign]
    dtls._handle_rtcp_data = handle_rtcp  # type: ignore[method-assign]


def media_taken_over(dtls: RTCDtlsTransport) -> bool:
    return "_handle_rtp_data" in vars(dtls) and "_handle_rtcp_data" in vars(dtls)


# --- outgoing media ----------------------------------------------------------------------


class RawSender:
    """Protects and sends RTP/RTCP on a connected DTLS transport without aiortc's await
    chain: the transport's SRTP session, then the nominated ICE pair's datagram transport.
    Follows re-nomination (the pair is looked up per packet)."""

    __slots__ = ("_dtls", "_nominated", "_protect", "_protect_rtcp", "closed")

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        if dtls.state != "connected" or dtls._tx_srtp is None:
            raise ConnectionError("DTLS transport is not connected")
        self._dtls = dtls
        session = dtls._tx_srtp
        self._protect: Callable[[bytes], bytes] = session.protect
        self._protect_rtcp: Callable[[bytes], bytes] = session.protect_rtcp
        self._nominated: dict[int, Any] = dtls.transport._connection._nominated
        self.closed = False

    def send_rtp(self, data: bytes) -> int:
        """Protect and send one RTP packet; returns the bytes sent (0 if not sent)."""
        pair = self._nominated.get(1)
        if pair is None or self.closed:
            return 0
        transport = pair.protocol.transport
        if transport.is_closing():
            return 0
        protected = self._protect(data)
        transport.sendto(protected, pair.remote_addr)
        return len(protected)

    def send_rtcp(self, data: bytes) -> int:
        pair = self._nominated.get(1)
        if pair is None or self.closed:
            return 0
        transport = pair.protocol.transport
        if transport.is_closing():
            return 0
        protected = self._protect_rtcp(data)
        transport.sendto(protected, pair.remote_addr)
        return len(protected)

    def remote_address(self) -> tuple[str, int] | None:
        pair = self._nominated.get(1)
        if pair is None:
            return None
        host, port = pair.remote_addr
        return (str(host), int(port))


# --- subscriber-side senders -------------------------------------------------------------


def silence_sender_rtcp(sender: RTCRtpSender) -> None:
    """Stop aiortc's sender from sending its own (zero-counter) SR/SDES/BYE."""

    async def send_rtcp(packets: list[Any]) -> None:
        return None

    sender._send_rtcp = send_rtcp  # type: ignore[method-assign]


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


# --- ICE gathering ------------------------------------------------------------------------


def configure_gathering(
    dtls: RTCDtlsTransport, addresses: Sequence[str], announce: str | None
) -> None:
    """Gather host candidates on ``addresses`` (all interfaces aioice finds if empty;
    loopback allowed when listed) and announce ``announce`` in their place."""
    if not addresses and not announce:
        return
    conn = dtls.transport.iceGatherer._connection
    if "gather_candidates" in vars(conn):
        return  # already configured (bundled transports share nothing, but be idempotent)

    async def gather_candidates() -> None:
        if conn._local_candidates_start:
            return
        conn._local_candidates_start = True
        wanted = list(addresses) or aioice.ice.get_host_addresses(
            use_ipv4=conn._use_ipv4, use_ipv6=conn._use_ipv6
        )
        candidates = await conn.get_component_candidates(component=1, addresses=wanted)
        if announce:
            for candidate in candidates:
                if candidate.type == "host":
                    candidate.host = announce
        conn._local_candidates += candidates
        conn._local_candidates_end = True

    conn.gather_candidates = gather_candidates  # type: ignore[method-assign]


def ice_connection_open_sockets(dtls: RTCDtlsTransport) -> int:
    """How many UDP sockets the transport's ICE agent holds (0 once released)."""
    return len(dtls.transport._connection._protocols)


def on_dtls_state(dtls: RTCDtlsTransport, callback: Callable[[str], None]) -> None:
    """Call ``callback(state)`` on every DTLS state change (public event, kept here
    beside the other transport hooks for one place to audit)."""

    def changed() -> None:
        callback(dtls.state)

    dtls.on("statechange", changed)
