"""One WebRTC peer connection carrying one direction of one stream (Galene's model).

:class:`Connection` is what both directions share: the aiortc peer connection, its
transports taken over (:mod:`vtp.sfu.aiortc_hooks`), ICE candidates, liveness and close.
Each direction is a module of its own:

* :class:`~vtp.sfu.upconnection.UpConnection` - a publication: the client offers, the
  server answers; its decrypted RTP is routed by SSRC (learned from the offer or from
  mid/payload type) to :class:`~vtp.sfu.uptrack.UpTrack` objects.
* :class:`~vtp.sfu.downconnection.DownConnection` - a subscription to one publication:
  the server offers one sendonly transceiver per up track, the client answers; each
  becomes a :class:`~vtp.sfu.downtrack.DownTrack`.

aiortc's RTCPeerConnection does ICE/DTLS/SRTP/SDP; its media objects never see a packet
(see :mod:`vtp.sfu.aiortc_hooks`). Any failure closes only this connection.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc import (
    RTCIceCandidate,
    RTCPeerConnection,
)
from aiortc.sdp import candidate_from_sdp

from vtp.sfu import aiortc_hooks as hooks
from vtp.sfu.arrival import ReceiveTimes
from vtp.sfu.errors import SfuError
from vtp.sfu.ice import IceSettings

if TYPE_CHECKING:
    from vtp.sfu.peer import Peer

logger = logging.getLogger(__name__)

MAX_REMOTE_CANDIDATES = 32
RELAY_RECEIVE_BUFFER = 4 << 20  # as the shared port's (icelite.RECEIVE_BUFFER)


class Connection:
    """What up and down connections share: the aiortc peer connection, liveness, close."""

    kind = "connection"

    def __init__(self, peer: Peer, settings: IceSettings) -> None:
        self.id = uuid.uuid4().hex[:16]
        self.peer = peer
        self.settings = settings
        self.pc = RTCPeerConnection(settings.server_configuration())
        self.sender: hooks.RawSender | None = None
        self.state = "new"
        self.closed = False
        self.close_reason = ""
        # its id has gone back to the client (set by the Peer once the SDP was accepted):
        # until then no event names it, so a refused offer leaves no trace the client sees
        self.announced = False
        self.rx_packets = 0  # every SRTP/SRTCP packet received (liveness)
        self.rtcp_ssrc = random.getrandbits(32)
        self._last_rx_seen = 0
        self._silent_since: float | None = None
        self._closing: asyncio.Task[None] | None = None
        self._remote_candidates = 0

        @self.pc.on("connectionstatechange")
        def _on_state() -> None:
            self._on_state(self.pc.connectionState)

    def _prepare_transports(self) -> None:
        for dtls in hooks.dtls_transports(self.pc):
            if not hooks.media_taken_over(dtls):
                times = ReceiveTimes()
                hooks.take_over_media(dtls, self._rtp_in, self._rtcp_in, times)
                hooks.accept_rsa_peers(dtls)
                if self.settings.udp_port is not None:
                    mux = self.peer.room.sfu.mux
                    if mux is None:
                        raise ConnectionError("the SFU is not started (its UDP port is closed)")
                    hooks.use_lite_connection(dtls, mux.connection(times))
                else:
                    hooks.configure_gathering(
                        dtls,
                        self.settings.addresses,
                        self.settings.announce_address,
                        self.settings.port_range,
                        # a cascade's relay feeds a whole edge: a busy moment there (DTLS
                        # handshakes of its joiners) must not cost packets on the relay
                        RELAY_RECEIVE_BUFFER if self.peer.relay else hooks.RECEIVE_BUFFER,
                    )
                    hooks.tolerant_consent(dtls, self.settings.consent_timeout_s)
                    hooks.stamp_arrivals(dtls, times)
                hooks.on_dtls_state(dtls, self._dtls_state_callback(dtls))

    def _dtls_state_callback(self, dtls: Any) -> Callable[[str], None]:
        def changed(state: str) -> None:
            self._on_dtls_state(dtls, state)

        return changed

    def _rtp_in(self, data: bytes, arrival_ns: int) -> None:
        self.rx_packets += 1
        try:
            self.receive_rtp(data, arrival_ns)
        except Exception:
            logger.exception(
                "%s %s: dropping an RTP packet that broke the handler", self.kind, self.id
            )

    def _rtcp_in(self, data: bytes) -> None:
        self.rx_packets += 1
        try:
            self.receive_rtcp(data)
        except Exception:
            logger.exception("%s %s: dropping RTCP that broke the handler", self.kind, self.id)

    def receive_rtp(self, data: bytes, arrival_ns: int = 0) -> None:
        """An RTP packet that arrived at ``arrival_ns`` (monotonic; 0: now)."""

    def receive_rtcp(self, data: bytes) -> None:
        pass

    def _on_dtls_state(self, dtls: Any, state: str) -> None:
        if state == "connected" and self.sender is None:
            try:
                self.sender = hooks.RawSender(dtls)
            except ConnectionError:
                return
            self.on_connected()
        elif state in ("closed", "failed"):
            self.schedule_close(f"dtls {state}")

    def _on_state(self, state: str) -> None:
        self.state = state
        self.peer.connection_state_changed(self, state)
        if state in ("failed", "closed"):
            self.schedule_close(f"connection {state}")

    def on_connected(self) -> None:
        pass

    def send_rtcp(self, data: bytes) -> int:
        sender = self.sender
        if sender is None:
            return 0
        return sender.send_rtcp(data)

    async def add_ice_candidate(
        self, candidate: str | None, sdp_mid: str | None, index: int | None
    ) -> None:
        if not candidate:
            await self.pc.addIceCandidate(None)
            return
        text = candidate[len("candidate:") :] if candidate.startswith("candidate:") else candidate
        try:
            parsed: RTCIceCandidate = candidate_from_sdp(text)
            parsed.port = int(parsed.port)
            if not 0 < parsed.port < 65536 or len(text) > 512:
                raise ValueError("bad port or length")
        except Exception as exc:
            raise SfuError("bad-candidate", f"malformed ICE candidate: {exc!r}") from None
        if str(parsed.protocol).lower() != "udp":
            return  # only UDP is served; TCP candidates are ignored, not an error
        self._remote_candidates += 1
        if self._remote_candidates > MAX_REMOTE_CANDIDATES:
            # each candidate makes the server send STUN checks to an address of the
            # client's choosing: bounded
            raise SfuError("bad-candidate", "too many ICE candidates")
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = index if index is not None or sdp_mid is not None else 0
        try:
            await self.pc.addIceCandidate(parsed)
        except Exception as exc:
            raise SfuError("bad-candidate", f"ICE candidate refused: {exc!r}") from None

    def check_alive(self, now: float, timeout: float) -> bool:
        """False once connected but silent for ``timeout`` seconds (or never connected
        within ``timeout`` of creation)."""
        if self.rx_packets != self._last_rx_seen:
            self._last_rx_seen = self.rx_packets
            self._silent_since = now
            return True
        if self._silent_since is None:
            self._silent_since = now
        return now - self._silent_since < timeout

    def schedule_close(self, reason: str) -> None:
        if self._closing is None and not self.closed:
            self._closing = asyncio.ensure_future(self.close(reason))

    async def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        try:
            self.on_close(reason)
        except Exception:
            logger.exception("%s %s: cleanup failed", self.kind, self.id)
        if self.sender is not None:
            self.sender.close()
        try:
            await self.pc.close()
        except Exception:
            logger.exception("%s %s: closing the peer connection failed", self.kind, self.id)
        # (together, with no await between: a scrape never counts this twice or not at all)
        self.peer.room.sfu.retire(self.counters())
        self.peer.connection_closed(self, reason)

    def on_close(self, reason: str) -> None:
        pass

    def stats(self) -> dict[str, object]:
        return {"id": self.id, "type": self.kind, "state": self.state}

    def counters(self) -> dict[str, int]:
        """Monotonic counters for the process-wide totals (metrics)."""
        return {}

    def tick(self, now: float) -> None:
        pass


__all__ = ["Connection"]
