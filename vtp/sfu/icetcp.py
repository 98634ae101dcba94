"""ICE over TCP on the single media port: passive candidates (RFC 6544) with RFC 4571
framing, for clients whose network drops UDP (school and office firewalls).

The ICE-lite mux (:mod:`vtp.sfu.icelite`) listens on TCP at the same port number as its
UDP socket. Each accepted TCP connection is a :class:`TcpStream`: it cuts the byte stream
into frames (a 2-byte big-endian length, then one STUN, DTLS or SRTP packet) and hands
them to the mux exactly as it hands datagrams, so STUN checks are routed by ufrag and
answered on the stream. A stream carries one peer connection: it is bound to the lite
connection of its first valid check and delivers DTLS/SRTP only to that connection,
and only while that connection's path is this stream. A stream with no valid check
within ``BIND_TIMEOUT_S`` is closed.

Media leaving through the compiled send path (:mod:`vtp.sfu.fastpath`) cannot go onto
the TCP socket directly: C would need to frame and cope with partial writes while
asyncio writes STUN and DTLS on the same socket. Instead a stream offers a
:meth:`TcpStream.packet_pipe`: a ``SOCK_SEQPACKET`` socket pair whose writing end the C
sink sends each protected packet into (as it would to a UDP socket), and whose reading
end this module drains on the event loop, framing every packet onto the TCP transport
in one write per wake-up. Media is dropped (counted) rather than queued when the TCP
send buffer holds more than ``WRITE_LIMIT`` bytes: stale video is worth nothing, and
the receiver's NACKs and keyframe requests repair the loss as they do on UDP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vtp.sfu.icelite import LiteConnection, UdpMux

logger = logging.getLogger(__name__)

BIND_TIMEOUT_S = 10.0  # a TCP connection must send a valid check within this
MAX_STREAMS = 4096  # TCP connections the mux accepts at once; more are refused
WRITE_LIMIT = 256 * 1024  # bytes queued on a stream beyond which media is dropped
PIPE_BUFFER = 1 << 20  # packets from the C sink waiting for the event loop
MAX_DRAIN = 256  # packets framed per wake-up (then other callbacks get their turn)
_LENGTH = struct.Struct("!H")


def frame(packet: bytes) -> bytes:
    """One RFC 4571 frame."""
    if len(packet) > 0xFFFF:
        raise ValueError("an RFC 4571 frame holds at most 65535 bytes")
    return _LENGTH.pack(len(packet)) + packet


class Deframer:
    """Cuts an RFC 4571 byte stream into packets (empty frames are skipped)."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        packets: list[bytes] = []
        start = 0
        end = len(buffer)
        while end - start >= 2:
            length = (buffer[start] << 8) | buffer[start + 1]
            if end - start - 2 < length:
                break
            if length:
                packets.append(bytes(buffer[start + 2 : start + 2 + length]))
            start += 2 + length
        if start:
            del buffer[:start]
        return packets

    @property
    def pending(self) -> int:
        return len(self._buffer)


class TcpStream(asyncio.Protocol):
    """One accepted ICE-TCP connection; to the mux it is an endpoint like a UDP socket."""

    stream = True

    def __init__(self, mux: UdpMux) -> None:
        self.mux = mux
        self.transport: asyncio.Transport | None = None
        self.addr: tuple[str, int] = ("", 0)
        self.connection: LiteConnection | None = None
        self.dropped = 0  # media packets not written (send buffer full)
        self._deframer = Deframer()
        self._bind_timer: asyncio.TimerHandle | None = None
        self._pipe_in: socket.socket | None = None  # read by the event loop
        self._pipe_out: socket.socket | None = None  # written by the C sink (a dup)

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.addr = (str(peer[0]), int(peer[1]))
        if not self.mux.add_stream(self):
            transport.close()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # small packets must not wait for Nagle's algorithm
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._bind_timer = asyncio.get_running_loop().call_later(
            BIND_TIMEOUT_S, self._unbound_timeout
        )

    def data_received(self, data: bytes) -> None:
        for packet in self._deframer.feed(data):
            try:
                self.mux.received(self, packet, self.addr)
            except Exception:  # one bad packet must not end the stream
                logger.exception("ICE-TCP: dropping a packet from %s", self.addr)
            if self.transport is None or self.transport.is_closing():
                return

    def arrival_ns(self) -> int:
        # a stream has no per-datagram kernel stamp: the frame is read now
        return time.monotonic_ns()

    def connection_lost(self, exc: Exception | None) -> None:
        self._teardown()
        self.mux.stream_lost(self)

    # --- what the mux and the lite connection use -----------------------------------------

    def bind(self, connection: LiteConnection) -> bool:
        """Carry ``connection`` (its first valid check on this stream); False if the
        stream already carries another one."""
        if self.connection is None:
            self.connection = connection
            if self._bind_timer is not None:
                self._bind_timer.cancel()
                self._bind_timer = None
            return True
        return self.connection is connection

    def send(self, data: bytes, addr: tuple[str, int]) -> bool:
        """Frame ``data`` onto the stream (STUN answers, DTLS): never dropped."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        transport.write(frame(data))
        return True

    def packet_pipe(self) -> int:
        """The file descriptor the C sink (and RTCP from Python) send packets into; each
        packet is framed onto this stream. Created on first use, closed with the stream."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("ICE-TCP stream is closed")
        if self._pipe_out is None:
            reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            for sock in (reader, writer):
                sock.setblocking(False)
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PIPE_BUFFER)
            writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PIPE_BUFFER)
            asyncio.get_running_loop().add_reader(reader.fileno(), self._drain)
            self._pipe_in, self._pipe_out = reader, writer
        return self._pipe_out.fileno()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # --- internals -----------------------------------------------------------------------

    def _drain(self) -> None:
        reader, transport = self._pipe_in, self.transport
        if reader is None:
            return
        parts: list[bytes] = []
        pack = _LENGTH.pack
        for _ in range(MAX_DRAIN):
            try:
                packet = reader.recv(2048)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close_pipe()
                return
            if not packet:
                break
            parts.append(pack(len(packet)))
            parts.append(packet)
        if not parts or transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > WRITE_LIMIT:
            self.dropped += len(parts) // 2
            return
        transport.write(b"".join(parts))

    def _unbound_timeout(self) -> None:
        self._bind_timer = None
        if self.connection is None:
            self.close()

    def _close_pipe(self) -> None:
        reader, self._pipe_in = self._pipe_in, None
        writer, self._pipe_out = self._pipe_out, None
        if reader is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(reader.fileno())
            reader.close()
        if writer is not None:
            writer.close()

    def _teardown(self) -> None:
        if self._bind_timer is not None:
            self._bind_timer.cancel()
            self._bind_timer = None
        self._close_pipe()
        self.transport = None


async def listen(mux: UdpMux, address: str, port: int) -> asyncio.Server:
    """A TCP listener on ``address:port`` whose connections are :class:`TcpStream`."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:  # "::" beside "0.0.0.0", as the UDP sockets
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot open TCP {address} port {port}: {exc.strerror}") from exc
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: TcpStream(mux), sock=sock)


def stream_of(endpoint: Any) -> TcpStream | None:
    """``endpoint`` if it is a TCP stream (a nominated pair's ``protocol``)."""
    return endpoint if isinstance(endpoint, TcpStream) else None
