"""A bare WebSocket client over a raw TCP socket, for what aiohttp's client cannot do:
write hundreds of frames in one TCP write (a flood as an attacker sends it) and read at
the pace of a slow client (a small receive buffer, not read until the test says so)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any


def text_frame(payload: str) -> bytes:
    """One masked client text frame (RFC 6455)."""
    data = payload.encode()
    head = bytes([0x81])
    n = len(data)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class RawWebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.close_code: int | None = None

    @classmethod
    async def open(
        cls, host: str, port: int, path: str, *, receive_buffer: int | None = None
    ) -> RawWebSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connecting: the window is set then
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def send(self, *messages: dict[str, Any]) -> None:
        """Every message in ONE write."""
        self.writer.write(b"".join(text_frame(json.dumps(m)) for m in messages))
        await self.writer.drain()

    async def receive(self, within: float = 10) -> dict[str, Any] | None:
        """The next text message; None once the server closed (``close_code`` set)."""
        while True:
            b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), within)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if n >= 2 else 1005
                return None
            if opcode == 0x1:
                result: dict[str, Any] = json.loads(payload)
                return result
            # ping/pong/binary: not needed by these tests

    async def until_closed(self, within: float = 10) -> list[dict[str, Any]]:
        """Read everything up to the server's close."""
        seen = []
        while (msg := await self.receive(within)) is not None:
            seen.append(msg)
        return seen

    def close(self) -> None:
        self.writer.close()
