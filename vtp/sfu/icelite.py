"""Every peer connection on one UDP port: an ICE-lite agent (RFC 8445 section 2.5) and the
socket it shares (as mediasoup's WebRtcServer and Galene's single-port mode do).

Operators then open one UDP port in the firewall or container instead of one per peer
connection (a class where everyone publishes needs a connection per publisher *and* per
subscription). The SFU is always ICE-controlled and answers checks, never sends them:

* :class:`UdpMux` owns the socket(s) - one per configured address, all on the same port.
  A STUN binding request is routed by the local ufrag in its USERNAME to that
  connection, which checks MESSAGE-INTEGRITY with its password and answers. Anything
  else is routed by source address to the connection that address was latched to by a
  valid check; datagrams from other addresses are dropped.
* :class:`LiteConnection` stands in for ``aioice.Connection`` inside aiortc
  (:func:`vtp.sfu.aiortc_hooks.use_lite_connection`): aiortc's DTLS and SRTP run over it
  unchanged. An address is latched on the first valid check and moves only on a valid
  check carrying USE-CANDIDATE (the controlling side's nomination) from another address;
  it is never taken from media. Consent (RFC 7675) is the client's checks: with none for
  ``consent_timeout_s`` (``VTP_ICE_CONSENT_TIMEOUT_S``) the connection closes. (A client
  that still checks but no longer reads is noticed from its receiver reports instead:
  :meth:`vtp.sfu.downconnection.DownConnection.check_alive`.)

With ``tcp`` the mux also listens on TCP at the same port number (ICE-TCP passive
candidates, :mod:`vtp.sfu.icetcp`): a TCP connection is one more endpoint, its frames
routed like datagrams, and candidates list UDP first and with the higher priority.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

import aioice
import aioice.ice
from aioice import stun

from vtp.sfu import icetcp
from vtp.sfu.arrival import ReceiveTimes, SocketClock
from vtp.sfu.ice import host_candidate, tcp_candidate

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0
CONSENT_TIMEOUT_S = 25.0  # the default of VTP_ICE_CONSENT_TIMEOUT_S
RECEIVE_QUEUE = 512  # datagrams waiting for aiortc's DTLS loop; more are dropped
RECEIVE_BUFFER = 4 << 20  # the one socket carries every peer's media


def _is_stun(data: bytes) -> bool:
    # RFC 7983: STUN's first byte is 0-3, and its magic cookie follows the length
    return len(data) >= 20 and data[0] < 4 and data[4:8] == b"\x21\x12\xa4\x42"


class _Endpoint(asyncio.DatagramProtocol):
    """One bound socket of the mux."""

    stream = False

    def __init__(self, mux: UdpMux) -> None:
        self.mux = mux
        self.transport: asyncio.DatagramTransport | None = None
        self.clock: SocketClock | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.clock = SocketClock(transport.get_extra_info("socket").fileno())

    def arrival_ns(self) -> int:
        """When the datagram being handled reached the host (read right after it)."""
        clock = self.clock
        return clock.last_ns() if clock is not None else time.monotonic_ns()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            self.mux.received(self, data, (addr[0], addr[1]))
        except Exception:  # one bad datagram must not stop the socket
            logger.exception("ICE-lite: dropping a datagram from %s", addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors for one peer; consent handles peers that went away

    def send(self, data: bytes, addr: tuple[str, int]) -> bool:
        if self.transport is None:
            return False
        self.transport.sendto(data, addr)
        return True


# what a lite connection's path goes through: the UDP socket or one ICE-TCP stream
Endpoint = _Endpoint | icetcp.TcpStream


class UdpMux:
    """The shared UDP socket(s) and the routing tables of every lite connection."""

    def __init__(
        self,
        addresses: tuple[str, ...],
        port: int,
        announce: str | None,
        consent_timeout_s: float = CONSENT_TIMEOUT_S,
        tcp: bool = False,
    ) -> None:
        self.consent_timeout_s = consent_timeout_s
        self.addresses = addresses or ("0.0.0.0",)
        self.port = port
        self.announce = announce
        self.tcp = tcp
        self.endpoints: list[_Endpoint] = []
        self.tcp_servers: list[asyncio.Server] = []
        self._streams: set[icetcp.TcpStream] = set()
        self._by_ufrag: dict[str, LiteConnection] = {}
        self._by_addr: dict[tuple[str, int], LiteConnection] = {}
        self.dropped = 0

    async def open(self) -> None:
        requested = self.port
        for attempt in range(8):
            await self._open_udp()
            if not self.tcp:
                return
            try:
                for address in self.addresses:
                    self.tcp_servers.append(await icetcp.listen(self, address, self.port))
                return
            except OSError:
                self.close()
                if requested != 0 or attempt == 7:
                    raise
                self.port = 0  # the free UDP port was taken on TCP: try another

    async def _open_udp(self) -> None:
        loop = asyncio.get_running_loop()
        for address in self.addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                if family == socket.AF_INET6:  # "::" beside "0.0.0.0" on the same port
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RECEIVE_BUFFER)
                sock.bind((address, self.port))
            except OSError as exc:
                sock.close()
                self.close()
                raise OSError(
                    exc.errno,
                    f"cannot open UDP {address} port {self.port}: {exc.strerror} (the media "
                    "port: VTP_ICE_UDP_PORT, 40000 by default; 0 takes a free one)",
                ) from exc
            self.port = sock.getsockname()[1]  # (port 0: the others take the same one)
            sock.setblocking(False)
            _, endpoint = await loop.create_datagram_endpoint(lambda: _Endpoint(self), sock=sock)
            self.endpoints.append(endpoint)

    def close(self) -> None:
        for connection in list(self._by_ufrag.values()):
            connection.closed_by_mux()
        for endpoint in self.endpoints:
            if endpoint.transport is not None:
                endpoint.transport.close()
        self.endpoints = []
        for server in self.tcp_servers:
            server.close()
        self.tcp_servers = []
        for stream in list(self._streams):
            stream.close()

    def bound_port(self) -> int:
        endpoint = self.endpoints[0]
        assert endpoint.transport is not None
        return int(endpoint.transport.get_extra_info("sockname")[1])

    def connection(self, receive_times: ReceiveTimes | None = None) -> LiteConnection:
        """A new lite connection, reachable through this mux; the arrival time of each
        datagram it hands out goes to ``receive_times``."""
        if not self.endpoints:
            raise ConnectionError("the SFU's UDP port is not open")
        times = receive_times or ReceiveTimes()
        connection = LiteConnection(self, times)
        while connection.local_username in self._by_ufrag:  # (32 random bits: rare)
            connection = LiteConnection(self, times)
        self._by_ufrag[connection.local_username] = connection
        return connection

    # --- routing ------------------------------------------------------------------------

    def received(self, endpoint: Endpoint, data: bytes, addr: tuple[str, int]) -> None:
        if _is_stun(data):
            self._stun(endpoint, data, addr)
            return
        if isinstance(endpoint, icetcp.TcpStream):
            # a stream delivers only to its connection, while that connection uses it
            connection = endpoint.connection
            if connection is not None and connection._endpoint is not endpoint:
                connection = None
        else:
            connection = self._by_addr.get(addr)
        if connection is None:
            self.dropped += 1
            return
        connection.data_received(data, endpoint.arrival_ns())

    def _stun(self, endpoint: Endpoint, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = stun.parse_message(data)
        except Exception:  # malformed in any way (hostile or broken): not worth a log line
            self.dropped += 1
            return
        if (
            message.message_class != stun.Class.REQUEST
            or message.message_method != stun.Method.BINDING
        ):
            return  # a lite agent sends no requests, so expects no responses
        username = message.attributes.get("USERNAME")
        if not isinstance(username, str):
            self.dropped += 1
            return
        connection = self._by_ufrag.get(username.split(":", 1)[0])
        if (
            connection is None
            or not message.check_message_integrity(connection.local_password.encode())
            or (isinstance(endpoint, icetcp.TcpStream) and not endpoint.bind(connection))
        ):
            self.dropped += 1
            return
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=message.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = addr
        response.add_message_integrity(connection.local_password.encode())
        endpoint.send(bytes(response), addr)
        connection.checked(endpoint, addr, "USE-CANDIDATE" in message.attributes)

    def latch(self, connection: LiteConnection, old: tuple[str, int] | None) -> None:
        if old is not None and self._by_addr.get(old) is connection:
            del self._by_addr[old]
        endpoint = connection._endpoint
        if connection.remote_addr is not None and not (endpoint is not None and endpoint.stream):
            previous = self._by_addr.get(connection.remote_addr)
            if previous is not None and previous is not connection:
                previous.lost_address()
            self._by_addr[connection.remote_addr] = connection

    def forget(self, connection: LiteConnection) -> None:
        if self._by_ufrag.get(connection.local_username) is connection:
            del self._by_ufrag[connection.local_username]
        addr = connection.remote_addr
        if addr is not None and self._by_addr.get(addr) is connection:
            del self._by_addr[addr]
        for stream in [s for s in self._streams if s.connection is connection]:
            stream.close()

    def renamed(self, connection: LiteConnection, old_ufrag: str) -> None:
        """``connection`` took new credentials (ICE restart): route checks by the new."""
        if self._by_ufrag.get(old_ufrag) is connection:
            del self._by_ufrag[old_ufrag]
        self._by_ufrag[connection.local_username] = connection

    def add_stream(self, stream: icetcp.TcpStream) -> bool:
        if len(self._streams) >= icetcp.MAX_STREAMS or not self.tcp_servers:
            return False
        self._streams.add(stream)
        return True

    def stream_lost(self, stream: icetcp.TcpStream) -> None:
        self._streams.discard(stream)
        connection = stream.connection
        if connection is not None and connection._endpoint is stream:
            connection.lost_address()

    def stats(self) -> dict[str, int]:
        return {
            "port": self.port,
            "connections": len(self._by_ufrag),
            "latched": len(self._by_addr),
            "dropped": self.dropped,
            "tcp_streams": len(self._streams),
        }


class _Pair:
    """What :class:`vtp.sfu.aiortc_hooks.RawSender` reads of a nominated pair."""

    __slots__ = ("protocol", "remote_addr")

    def __init__(self, endpoint: Endpoint, remote_addr: tuple[str, int]) -> None:
        self.protocol = endpoint
        self.remote_addr = remote_addr


class LiteConnection:
    """The part of ``aioice.Connection`` aiortc uses, for one peer connection on the mux."""

    def __init__(self, mux: UdpMux, receive_times: ReceiveTimes) -> None:
        self.mux = mux
        # RFC 8445: ufrag >= 4 and password >= 22 characters of ice-chars
        self.local_username = secrets.token_hex(4)
        self.local_password = secrets.token_hex(16)
        self.remote_username: str | None = None
        self.remote_password: str | None = None
        self.remote_is_lite = False
        self.remote_candidates: list[aioice.Candidate] = []
        self.local_candidates: list[aioice.Candidate] = []
        self.remote_addr: tuple[str, int] | None = None
        # aiortc's hooks read these aioice attributes (see aiortc_hooks)
        self._nominated: dict[int, Any] = {}
        self._protocols: list[Any] = []
        self._endpoint: Endpoint | None = None
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(RECEIVE_QUEUE)
        self.receive_times = receive_times  # the arrival time of each queued datagram
        self._events: asyncio.Queue[aioice.ice.ConnectionEvent] = asyncio.Queue()
        self._nominated_event = asyncio.Event()
        self._last_check = time.monotonic()
        self._watchdog: asyncio.Task[None] | None = None
        self.closed = False
        self.on_close: Callable[[], None] | None = None
        # the client nominated a new path (after an ICE restart, a NAT rebinding)
        self.on_moved: Callable[[], None] | None = None

    # the SFU's side of a lite pair is always controlled, whatever aiortc asks
    @property
    def ice_controlling(self) -> bool:
        return False

    @ice_controlling.setter
    def ice_controlling(self, value: bool) -> None:
        pass

    async def gather_candidates(self) -> None:
        if self.local_candidates:
            return
        for endpoint in self.mux.endpoints:
            assert endpoint.transport is not None
            host, port = endpoint.transport.get_extra_info("sockname")[:2]
            for address in self._announced(host):
                self.local_candidates.append(host_candidate(address, port))
        # after UDP, and with a lower priority: browsers use TCP only when UDP fails
        for server in self.mux.tcp_servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                for address in self._announced(host):
                    self.local_candidates.append(tcp_candidate(address, port))

    def _announced(self, host: str) -> list[str]:
        """The addresses to offer for a socket bound to ``host``. The announced address
        stands in for those of its own family only: behind an IPv4 NAT, the host's IPv6
        addresses are usually public and offered as they are."""
        announce = self.mux.announce
        if announce and (":" in announce) == (":" in host):
            return [announce]
        if host in ("0.0.0.0", "::"):
            # bound to every interface: offer each address (replies leave from the
            # address the kernel routes by; on multi-homed hosts list the addresses)
            return list(
                aioice.ice.get_host_addresses(use_ipv4=host == "0.0.0.0", use_ipv6=host == "::")
            )
        return [host]

    async def add_remote_candidate(self, candidate: aioice.Candidate | None) -> None:
        # a lite agent does not check candidates: it answers the checks that arrive
        if candidate is not None and len(self.remote_candidates) < 32:
            self.remote_candidates.append(candidate)

    async def connect(self) -> None:
        """Wait for the client's nominating check."""
        if self._watchdog is None:
            self._watchdog = asyncio.ensure_future(self._watch_consent())
        try:
            await asyncio.wait_for(self._nominated_event.wait(), CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise ConnectionError("ICE-lite: no nominating check arrived") from None
        if self.closed:
            raise ConnectionError("ICE-lite connection closed")

    def checked(self, endpoint: Endpoint, addr: tuple[str, int], nominate: bool) -> None:
        """A valid binding request arrived from ``addr`` (already answered)."""
        if self.closed:
            return
        self._last_check = time.monotonic()
        moved = addr != self.remote_addr or endpoint is not self._endpoint
        if self.remote_addr is None or (nominate and moved):
            old = self.remote_addr
            self.remote_addr = addr
            self._endpoint = endpoint
            self.mux.latch(self, old)
            if old is not None and self.on_moved is not None:
                self.on_moved()
        if nominate:
            pair = self._nominated.get(1)
            if pair is None or pair.remote_addr != addr or pair.protocol is not endpoint:
                self._nominated[1] = _Pair(endpoint, addr)  # first, or the client moved
            self._nominated_event.set()

    def restart(self) -> tuple[str, str]:
        """ICE restart (RFC 8445 section 2.4): new local credentials, so only checks of
        the client's restarted agent are answered; media keeps its path until the client
        nominates a new one. Returns the new (ufrag, password)."""
        if self.closed:
            raise ConnectionError("ICE-lite connection closed")
        old = self.local_username
        self.local_username = secrets.token_hex(4)
        while self.local_username in self.mux._by_ufrag:  # (32 random bits: rare)
            self.local_username = secrets.token_hex(4)
        self.local_password = secrets.token_hex(16)
        self.mux.renamed(self, old)
        return self.local_username, self.local_password

    def lost_address(self) -> None:
        """Another connection's client now checks from our address (ours went away and
        its port was reused): stop sending there until our client nominates again."""
        self.remote_addr = None
        self._nominated.clear()

    def data_received(self, data: bytes, arrival_ns: int) -> None:
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            self.mux.dropped += 1
            return
        self.receive_times.queued(arrival_ns)

    async def recv(self) -> bytes:
        data = await self._queue.get()
        if data is None:
            raise ConnectionError("ICE-lite connection closed")
        self.receive_times.taken()
        return data

    async def send(self, data: bytes) -> None:
        endpoint, addr = self._endpoint, self.remote_addr
        if self.closed or endpoint is None or addr is None or not endpoint.send(data, addr):
            raise ConnectionError("ICE-lite connection is not established")

    async def get_event(self) -> aioice.ice.ConnectionEvent | None:
        return await self._events.get()

    async def _watch_consent(self) -> None:
        while not self.closed:
            timeout = self.mux.consent_timeout_s
            await asyncio.sleep(min(1.0, timeout / 3))
            if time.monotonic() - self._last_check > timeout:
                logger.info("ICE-lite consent expired (%s)", self.remote_addr)
                await self.close()
                return

    def closed_by_mux(self) -> None:
        self._shutdown()

    async def close(self) -> None:
        self._shutdown()
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog

    def _shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.mux.forget(self)
        self._nominated.clear()
        self._nominated_event.set()  # a pending connect() gives up
        while self._queue.full():  # what was not read is dropped with the connection
            self._queue.get_nowait()
        self.receive_times.clear()
        self._queue.put_nowait(None)  # aiortc's receive loop ends
        self._events.put_nowait(aioice.ice.ConnectionClosed())
