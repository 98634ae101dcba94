"""The SFU's compiled send path (fanout.c through cffi): per-subscriber header rewrite,
SRTP protect and ``sendto`` for every forwarded packet, without the interpreter.

Python keeps every decision; C only writes bytes:

* a **sink** (``struct vtp_sink``) is one subscriber connection's sending side: its SRTP
  session (libsrtp's ``srtp_protect`` and ``srtp_t``, reached through
  :mod:`vtp.sfu.aiortc_hooks`) and the nominated pair's socket and address;
* a **down** (``struct vtp_down``) is one outgoing stream's numbering (sequence and
  timestamp offsets, where it started, the highest packet sent, counters) and its
  negotiated SSRC, payload type and header-extension ids;
* a :class:`DownList` is an up track's array of started downs: one ``vtp_fanout`` call
  per incoming packet writes it to all of them.

cffi objects are typed ``Any``: the C declarations in ``fanout.h`` are their types.
"""

from __future__ import annotations

from typing import Any

from vtp.sfu.fastpath._fanout import ffi, lib

send = lib.vtp_send  # one packet to one down, no bookkeeping (retransmissions)
write = lib.vtp_write  # one packet to one down, numbering and counters kept
fanout = lib.vtp_fanout  # vtp_write for each down of a DownList
# the same for downs at one temporal level (vtp.sfu.temporal): numbering less what it drops
send_skip = lib.vtp_send_skip
fanout_skip = lib.vtp_fanout_skip
MAX_PACKET = int(lib.VTP_MAX_PACKET)
MAX_MID = 16


def new_sink(protect_address: int, srtp_address: int) -> Any:
    """A sink sending nothing yet (fd -1) over the given libsrtp function and session."""
    sink = ffi.new("struct vtp_sink *")
    sink.protect = ffi.cast("vtp_protect_fn", protect_address)
    sink.srtp = ffi.cast("void *", srtp_address)
    sink.fd = -1
    return sink


def aim_sink(sink: Any, fd: int, host: str, port: int) -> bool:
    """Send through ``fd`` to ``host:port`` (an IPv4 or IPv6 literal); False if invalid."""
    return bool(lib.vtp_sink_target(sink, fd, host.encode(), port) == 0)


def aim_sink_connected(sink: Any, fd: int) -> None:
    """Send through the connected socket ``fd`` (a ``SOCK_SEQPACKET`` pair, for ICE-TCP):
    no address (length 0), so ``sendto`` goes to the socket's peer."""
    sink.addrlen = 0
    sink.fd = fd


def stop_sink(sink: Any) -> None:
    sink.fd = -1


def new_down(
    ssrc: int, payload_type: int, mid_id: int, mid: str, audio_level_id: int, abs_id: int
) -> Any:
    """A down's state, not attached to a sink yet."""
    down = ffi.new("struct vtp_down *")
    down.ssrc = ssrc & 0xFFFFFFFF
    down.payload_type = payload_type & 0x7F
    mid_bytes = mid.encode()[:MAX_MID]
    if mid_id and mid_bytes:
        down.mid_id = mid_id
        down.mid_len = len(mid_bytes)
        ffi.memmove(down.mid, mid_bytes, len(mid_bytes))
    down.level_id = audio_level_id
    down.abs_id = abs_id
    return down


class DownList:
    """A C array of down pointers for ``vtp_fanout``. Adding and removing are O(1) (the
    last entry fills a removed slot; order does not matter), so a class of hundreds
    joining at once costs no quadratic work. ``owners`` keeps the Python object owning
    each struct alive for as long as the array points at it."""

    __slots__ = ("_slots", "array", "capacity", "count", "owners")

    def __init__(self) -> None:
        self.capacity = 8
        self.array: Any = ffi.new("struct vtp_down *[]", self.capacity)
        self.count = 0
        self.owners: list[object] = []
        self._slots: dict[int, int] = {}  # id(owner) -> index

    def __contains__(self, owner: object) -> bool:
        return id(owner) in self._slots

    def add(self, owner: object, down: Any) -> None:
        if id(owner) in self._slots:
            return
        if self.count == self.capacity:
            bigger = ffi.new("struct vtp_down *[]", self.capacity * 2)
            ffi.memmove(bigger, self.array, ffi.sizeof("struct vtp_down *") * self.count)
            self.array = bigger
            self.capacity *= 2
        self.array[self.count] = down
        self.owners.append(owner)
        self._slots[id(owner)] = self.count
        self.count += 1

    def remove(self, owner: object) -> None:
        index = self._slots.pop(id(owner), None)
        if index is None:
            return
        last = self.count - 1
        if index != last:
            moved = self.owners[last]
            self.array[index] = self.array[last]
            self.owners[index] = moved
            self._slots[id(moved)] = index
        self.array[last] = ffi.NULL
        self.owners.pop()
        self.count = last

    def clear(self) -> None:
        for i in range(self.count):
            self.array[i] = ffi.NULL
        self.owners.clear()
        self._slots.clear()
        self.count = 0


__all__ = [
    "MAX_PACKET",
    "DownList",
    "aim_sink",
    "aim_sink_connected",
    "fanout",
    "fanout_skip",
    "new_down",
    "new_sink",
    "send",
    "send_skip",
    "write",
]
