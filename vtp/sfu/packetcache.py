"""Recent packets of one up track, indexed by forwarded sequence number (``fseq``), for
NACKs."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar


class _Sequenced(Protocol):
    @property
    def fseq(self) -> int: ...


P = TypeVar("P", bound=_Sequenced)


class PacketCache(Generic[P]):
    """A ring of the last ``size`` packets (size a power of two)."""

    __slots__ = ("_mask", "_ring")

    def __init__(self, size: int) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError("cache size must be a power of two")
        self._mask = size - 1
        self._ring: list[P | None] = [None] * size

    def add(self, packet: P) -> None:
        self._ring[packet.fseq & self._mask] = packet

    def get(self, fseq: int) -> P | None:
        packet = self._ring[fseq & self._mask]
        if packet is not None and packet.fseq == fseq:
            return packet
        return None

    def __contains__(self, fseq: int) -> bool:
        return self.get(fseq) is not None

    def clear(self) -> None:
        self._ring = [None] * (self._mask + 1)
