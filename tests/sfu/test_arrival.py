"""Kernel receive times: datagrams that waited in the socket while the event loop was
busy keep the times they arrived at (what transport-cc feedback must report)."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from tests.support.waiting import eventually
from vtp.sfu.arrival import ReceiveTimes, SocketClock


class _Recorder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.clock: SocketClock | None = None
        self.seen: list[tuple[bytes, int, int]] = []  # (data, arrived, read) ns

    def connection_made(self, transport: Any) -> None:
        self.clock = SocketClock(transport.get_extra_info("socket").fileno())

    def datagram_received(self, data: bytes, addr: Any) -> None:
        assert self.clock is not None
        self.seen.append((data, self.clock.last_ns(), time.monotonic_ns()))


async def _stamping_on(recorder: _Recorder, sender: socket.socket, address: Any) -> None:
    """Wait until the kernel stamps this socket's datagrams: where no socket of the host
    had stamping on, Linux switches it on in a deferred work item, so under load the
    first datagrams after SocketClock() come unstamped (their time: when they are read)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        recorder.seen.clear()
        sender.sendto(b"probe", address)
        time.sleep(0.03)  # noqa: ASYNC251 (the loop must read it late to tell)
        await eventually(lambda: recorder.seen)
        _, arrived, read = recorder.seen[0]
        recorder.seen.clear()
        if read - arrived > 20_000_000:
            return
    raise AssertionError("no datagram was stamped by the kernel within 10 s")


async def test_datagrams_read_late_keep_the_times_they_arrived_at() -> None:
    loop = asyncio.get_running_loop()
    transport, recorder = await loop.create_datagram_endpoint(
        _Recorder, local_addr=("127.0.0.1", 0)
    )
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        address = transport.get_extra_info("sockname")
        await _stamping_on(recorder, sender, address)
        sender.sendto(b"first", address)
        # the loop is busy (blocked on purpose): both datagrams wait in the kernel
        time.sleep(0.25)  # noqa: ASYNC251 (the stall is what is tested)
        sender.sendto(b"second", address)
        await eventually(lambda: len(recorder.seen) == 2)
        (d1, arrived1, read1), (d2, arrived2, read2) = recorder.seen
        assert (d1, d2) == (b"first", b"second")
        assert read2 - read1 < 100_000_000  # read together, after the stall
        assert 200_000_000 < arrived2 - arrived1 < 1_000_000_000  # stamped 0.25 s apart
        assert arrived1 <= read1 and arrived2 <= read2
        assert read1 - arrived1 > 200_000_000  # the first one waited in the kernel
    finally:
        transport.close()
        sender.close()


def test_receive_times_follow_the_queue_order() -> None:
    times = ReceiveTimes()
    times.queued(10)
    times.queued(20)
    times.taken()
    assert times.current == 10
    times.taken()
    assert times.current == 20
    before = time.monotonic_ns()
    times.taken()  # nothing recorded for it (queued before stamping began): now
    assert times.current >= before
