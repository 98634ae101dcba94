"""Sequence-number and timestamp continuity.

An :class:`Unwrapper` turns a publisher's 16-bit sequence numbers (or 32-bit timestamps)
into an unbounded, continuous counter: wrap-around is followed, small reorderings map
back into the past, and a jump larger than the publisher could honestly make (a reset,
a new SSRC, or a hostile sender) is absorbed by rebasing so that the counter continues
one step after the highest value seen. Each subscriber then adds its own fixed offset,
so what it receives stays continuous whatever the publisher sends."""

from __future__ import annotations


class Unwrapper:
    """Maps a modular counter (``bits`` wide) to a continuous unbounded integer."""

    __slots__ = (
        "_half",
        "_mask",
        "_max_back",
        "_max_forward",
        "_offset",
        "_step",
        "highest",
        "rebases",
    )

    def __init__(self, bits: int, max_forward: int, max_back: int, step: int = 1) -> None:
        self._mask = (1 << bits) - 1
        self._half = 1 << (bits - 1)
        self._max_forward = max_forward
        self._max_back = max_back
        self._step = step
        self._offset: int | None = None
        self.highest = 0
        self.rebases = 0

    def map(self, value: int) -> int:
        """The continuous value for ``value``; updates the highest value seen."""
        offset = self._offset
        if offset is None:
            self._offset = 0
            self.highest = value
            return value
        last = (self.highest - offset) & self._mask
        delta = (value - last) & self._mask
        if delta < self._half:
            if delta <= self._max_forward:
                self.highest += delta
                return self.highest
        else:
            back = self._mask + 1 - delta
            if back <= self._max_back:
                return self.highest - back
        # implausible jump: rebase so the counter continues
        self.rebases += 1
        self.highest += self._step
        self._offset = (self.highest - value) & self._mask
        # keep _offset consistent with (highest - offset) & mask == value
        return self.highest

    def to_wire(self, unwrapped: int) -> int:
        """The publisher's modular value for an unwrapped one (under the current base)."""
        offset = self._offset or 0
        return (unwrapped - offset) & self._mask
