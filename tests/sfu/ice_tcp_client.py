"""An aiortc peer connection that reaches the SFU over ICE-TCP only (aioice has no ICE-TCP):
a client-side stand-in for ``aioice.Connection`` that connects to the server's passive TCP
candidate, sends one nominating check and then carries DTLS/SRTP in RFC 4571 frames.
For tests and bench/forward.py's ``--tcp`` mode; the SFU's ICE-lite side does the rest.

``on_rtp``, when given, takes SRTP packets instead of aiortc (the benchmark counts them
without decrypting)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import struct
from collections.abc import Callable
from typing import Any

import aioice
import aioice.ice
from aioice import stun
from aiortc import RTCIceParameters, RTCPeerConnection

from vtp.sfu import aiortc_hooks, icetcp

CONSENT_INTERVAL_S = 5.0


class TcpIceClient:
    def __init__(self, on_rtp: Callable[[bytes], None] | None = None, host: str = "127.0.0.1"):
        self.host = host
        self.local_username = secrets.token_hex(4)
        self.local_password = secrets.token_hex(16)
        self.remote_username: str | None = None
        self.remote_password: str | None = None
        self.remote_is_lite = False
        self.remote_candidates: list[aioice.Candidate] = []
        self.local_candidates: list[aioice.Candidate] = []
        self.ice_controlling = True
        self._on_rtp = on_rtp
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._answered: asyncio.Future[None] | None = None
        self.closed = False

    async def gather_candidates(self) -> None:
        # an active TCP candidate (port 9, RFC 6544): aiortc starts ICE only with a local
        # candidate; the lite server answers the checks and ignores candidates
        if not self.local_candidates:
            self.local_candidates.append(
                aioice.Candidate(
                    foundation="tcpactive",
                    component=1,
                    transport="tcp",
                    priority=1,
                    host=self.host,
                    port=9,
                    type="host",
                    tcptype="active",
                )
            )

    async def add_remote_candidate(self, candidate: aioice.Candidate | None) -> None:
        if candidate is not None:
            self.remote_candidates.append(candidate)

    def _check(self) -> bytes:
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        request.attributes["USERNAME"] = f"{self.remote_username}:{self.local_username}"
        request.attributes["PRIORITY"] = 1
        request.attributes["ICE-CONTROLLING"] = 1
        request.attributes["USE-CANDIDATE"] = None
        request.add_message_integrity((self.remote_password or "").encode())
        request.add_fingerprint()
        return bytes(request)

    async def connect(self) -> None:
        tcp = [c for c in self.remote_candidates if c.transport.lower() == "tcp"]
        if not tcp:
            raise ConnectionError("the server offered no ICE-TCP candidate")
        reader, self._writer = await asyncio.open_connection(tcp[0].host, tcp[0].port)
        self._answered = asyncio.get_running_loop().create_future()
        self._tasks.append(asyncio.ensure_future(self._read(reader)))
        self._writer.write(icetcp.frame(self._check()))
        try:
            await asyncio.wait_for(asyncio.shield(self._answered), 10)
        except TimeoutError:
            raise ConnectionError("no answer to the ICE-TCP check") from None
        self._tasks.append(asyncio.ensure_future(self._consent()))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        on_rtp = self._on_rtp
        try:
            while True:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
                packet = await reader.readexactly(length)
                if packet[:1] in (b"\x00", b"\x01"):
                    if self._answered is not None and not self._answered.done():
                        self._answered.set_result(None)
                elif on_rtp is not None and 127 < packet[0] < 192 and not 191 < packet[1] < 224:
                    on_rtp(packet)
                else:
                    self._queue.put_nowait(packet)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._queue.put_nowait(None)

    async def _consent(self) -> None:
        while self._writer is not None and not self._writer.is_closing():
            await asyncio.sleep(CONSENT_INTERVAL_S)
            if self._writer is not None:
                self._writer.write(icetcp.frame(self._check()))

    async def recv(self) -> bytes:
        data = await self._queue.get()
        if data is None:
            self._queue.put_nowait(None)
            raise ConnectionError("ICE-TCP connection closed")
        return data

    async def send(self, data: bytes) -> None:
        if self._writer is None or self._writer.is_closing():
            raise ConnectionError("ICE-TCP connection is not established")
        self._writer.write(icetcp.frame(data))

    async def get_event(self) -> Any:
        return await self._events.get()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._writer is not None:
            self._writer.close()
        self._queue.put_nowait(None)
        self._events.put_nowait(aioice.ice.ConnectionClosed())


def over_ice_tcp(pc: RTCPeerConnection, on_rtp: Callable[[bytes], None] | None = None) -> None:
    """Run ``pc``'s (bundled) ICE over TCP. Call after setRemoteDescription(offer) or
    before setLocalDescription(offer): when its transports exist, before gathering."""
    for dtls in aiortc_hooks.dtls_transports(pc):
        client = TcpIceClient(on_rtp)
        ice = dtls.transport
        gatherer = ice.iceGatherer
        # candidates of an offer already applied went to the agent being replaced
        client.remote_candidates = list(gatherer._connection.remote_candidates)
        gatherer._connection = client
        ice._connection = client
        ice._recv = client.recv
        ice._send = client.send

        def parameters(client: TcpIceClient = client) -> RTCIceParameters:
            return RTCIceParameters(
                usernameFragment=client.local_username, password=client.local_password
            )

        gatherer.getLocalParameters = parameters
