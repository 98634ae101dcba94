"""When each datagram reached this host: the kernel's receive time, not the event loop's.

Transport-wide congestion control (``twcc.py``) reports when each packet arrived, and the
publisher's estimator reads queueing from how those gaps differ from the sending gaps.
Times taken in the event loop include how long the loop was busy before it read the
socket: on a loaded process packets are read late and in bursts, which looks like a
queue growing and draining on the network, and Chromium's estimate collapsed with five
subscribers on a busy machine (its 720p layer came and went). The kernel stamps every
datagram as it arrives; ``SIOCGSTAMPNS`` reads the stamp of the last datagram read from
a socket (0.5 µs per call here), so the asyncio transports, which read with ``recvfrom``,
stay as they are and the stamp is read right after, in ``datagram_received``.

The stamp then travels beside the datagram through the ICE connection's receive queue:
:class:`ReceiveTimes` is that queue's shadow, filled where a datagram is queued and read
where aiortc takes it, so the RTP handler, which runs synchronously after the take, sees
the time of the packet it handles.
"""

from __future__ import annotations

import collections
import fcntl
import struct
import time

SIOCGSTAMPNS = 0x8907  # <linux/sockios.h>
_TIMESPEC = struct.Struct("qq")


class SocketClock:
    """The kernel receive time of the last datagram read from one socket."""

    __slots__ = ("_buf", "_fd", "enabled")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buf = bytearray(_TIMESPEC.size)
        self.enabled = True
        try:
            # the first call switches stamping on for the socket (and answers ENOENT:
            # nothing stamped yet); where no socket of the host had it on, Linux does
            # so in a deferred work item, so the first datagrams may come unstamped
            # (then their time is when they are read)
            fcntl.ioctl(self._fd, SIOCGSTAMPNS, self._buf, True)
        except OSError as exc:
            self.enabled = exc.errno == 2  # ENOENT; anything else: not supported here

    def last_ns(self) -> int:
        """Monotonic nanoseconds (``time.monotonic_ns``) at which the datagram last read
        from the socket arrived; now, where the kernel has no stamp."""
        now = time.monotonic_ns()
        if not self.enabled:
            return now
        try:
            fcntl.ioctl(self._fd, SIOCGSTAMPNS, self._buf, True)
        except OSError:
            return now
        sec, nsec = _TIMESPEC.unpack(self._buf)
        stamped = sec * 1_000_000_000 + nsec - (time.time_ns() - now)  # realtime -> monotonic
        # a clock step (NTP) could put it in the future; older than a few seconds is
        # a stale stamp, not a datagram that waited that long
        return stamped if now - 5_000_000_000 < stamped <= now else now


class ReceiveTimes:
    """Arrival times (monotonic ns) of one ICE connection's queued datagrams, in queue
    order; ``current`` is the time of the datagram its reader took last (0 before the
    first: unknown)."""

    __slots__ = ("_pending", "current")

    def __init__(self) -> None:
        self._pending: collections.deque[int] = collections.deque()
        self.current = 0

    def queued(self, arrival_ns: int) -> None:
        self._pending.append(arrival_ns)

    def taken(self) -> None:
        pending = self._pending
        self.current = pending.popleft() if pending else time.monotonic_ns()

    def clear(self) -> None:
        self._pending.clear()
