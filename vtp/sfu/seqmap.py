"""Sequence-number and timestamp continuity.

Three numbers name one packet on the packet path (the same names in Python and C):

* ``seq16``: the 16-bit sequence number on the wire (a publisher's, or one a subscriber
  is sent or NACKs);
* ``pseq``: the publisher's number unwrapped (:class:`Unwrapper`): unbounded, with holes
  where packets were lost;
* ``fseq``: the number the SFU gives out on an up track (:class:`SeqMap`): continuous,
  the publisher's numbers it did not forward (padding, invalid, withheld) taken out.
  Caches, taps, temporal levels and down tracks all count in ``fseq``; a down track's
  ``seq16`` is ``fseq`` (less what its temporal level drops) plus its own offset.

An :class:`Unwrapper` turns a publisher's 16-bit sequence numbers (or 32-bit timestamps)
into an unbounded, continuous counter: wrap-around is followed, small reorderings map
back into the past, and a jump larger than the publisher could honestly make (a reset,
a new SSRC, or a hostile sender) is absorbed by rebasing so that the counter continues
one step after the highest value seen. Each subscriber then adds its own fixed offset,
so what it receives stays continuous whatever the publisher sends."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

DROPPED_WINDOW = 2000  # publisher numbers not forwarded are remembered this far back


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


class SeqMap:
    """One up track's forwarded numbering (``pseq`` -> ``fseq``), after mediasoup's
    ``SeqManager``: the publisher's numbers that are not forwarded are *dropped* and later
    packets numbered as if they had never been sent, so subscribers see no hole to NACK.
    A number already given out stays put: a late packet below the highest forwarded
    cannot be dropped (subscribers see that hole as a loss).

    The dropped numbers are kept sorted; those more than ``window`` behind the newest are
    folded into a base (they shift every later packet alike)."""

    __slots__ = ("_base", "_dropped", "_window", "highest_forwarded")

    def __init__(self, window: int = DROPPED_WINDOW) -> None:
        self._window = window
        self._dropped: list[int] = []  # sorted pseqs not forwarded, newer than the base
        self._base = 0  # dropped pseqs forgotten
        self.highest_forwarded = -1  # pseq

    def forward(self, pseq: int) -> int:
        """The ``fseq`` of a packet being forwarded."""
        if pseq > self.highest_forwarded:
            self.highest_forwarded = pseq
        dropped = self._dropped
        if dropped:
            return pseq - self._base - bisect.bisect_left(dropped, pseq)
        return pseq - self._base

    def fseq(self, pseq: int) -> int | None:
        """The ``fseq`` ``pseq`` has (or would have); None if it was dropped."""
        dropped = self._dropped
        if dropped:
            i = bisect.bisect_left(dropped, pseq)
            if i < len(dropped) and dropped[i] == pseq:
                return None
            return pseq - self._base - i
        return pseq - self._base

    def pseq(self, fseq: int) -> int:
        """The publisher's number for a forwarded one."""
        pseq = fseq + self._base
        for d in self._dropped:
            if d <= pseq:
                pseq += 1
            else:
                break
        return pseq

    def drop(self, pseq: int, newest: int) -> bool:
        """Take ``pseq`` out of the numbering; False if too late (at or below the highest
        forwarded). ``newest``: the highest ``pseq`` seen, which the window follows."""
        if pseq <= self.highest_forwarded:
            return False
        dropped = self._dropped
        if dropped and pseq <= dropped[-1]:
            bisect.insort(dropped, pseq)
        else:
            dropped.append(pseq)
        horizon = newest - self._window
        if dropped[0] < horizon:
            keep = bisect.bisect_left(dropped, horizon)
            self._base += keep
            del dropped[:keep]
        return True

    def never_coming(self, pseqs: Iterable[int]) -> None:
        """The publisher's numbering jumped (a reset, or a hostile sender): ``pseqs``,
        missing under the old numbering, will never arrive; those not given out yet are
        dropped."""
        for pseq in pseqs:
            if pseq > self.highest_forwarded:
                bisect.insort(self._dropped, pseq)
