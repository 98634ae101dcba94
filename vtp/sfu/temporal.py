"""VP8 temporal layers: a subscriber may get a lower frame rate of the same encoding.

A publisher encoding with temporal layers (Chromium's ``L1T3``: TL0 at 1/4 of the frame
rate, TL1 adding the next 1/4, TL2 the other half) marks each packet's layer in the VP8
payload descriptor (TID, and Y: "layer sync", the frame refers only to TL0). A down
track capped at temporal level *m* is sent the packets with TID <= *m* only
(:attr:`DownTrack.temporal <vtp.sfu.downtrack.DownTrack>`; :data:`ALL` = no cap).

What the receiver sees must still be one continuous stream: no sequence-number gaps it
would NACK and picture IDs without holes (the receiver's reference finder takes a hole
for a lost picture), TL0PICIDX as sent (TL0 is never dropped). As LiveKit's VP8 munger
does, the numbering subtracts what was dropped; here it is kept **once per level per up
track**, not per subscriber: a :class:`Level` remembers which packets (by the up
track's forwarded number, ``fseq``) and which pictures (by timestamp) it dropped, so a
packet numbered ``fseq`` goes out as ``seq16 = fseq - skip(fseq) + seq_offset`` with
picture ID ``pid - picture_skip(uts) + pid_offset`` to every down of the level, in one C
fan-out call per level (``vtp_fanout_skip``). A down changing level changes its offsets
so its numbering continues (:meth:`vtp.sfu.downtrack.DownTrack.temporal_moved`), and
answers NACKs by mapping back (:meth:`Level.fseq_of`).

When a level may change (the up track does it, at the first packet of a picture):
down at once; up one step at a time, at a layer-sync (Y) picture of the next layer (a
TL1 picture without Y may refer to an earlier TL1 picture the subscriber never got:
mediasoup's VP8 handling waits for Y the same way), or at a keyframe to any level; a
publisher that never sends Y pictures of the next layer is asked for a keyframe after
:data:`UP_SWITCH_KEYFRAME_S`.
"""

from __future__ import annotations

import bisect

from vtp.sfu import fastpath

ALL = 3  # no temporal cap: the down gets every packet (its own fan-out, without skips)
LEVELS = 3  # levels with dropping: TID <= 0, <= 1, <= 2 (TID 3 only reaches ALL)
WINDOW = 2000  # dropped packets this far back are remembered (NACKs reach ~1 s back)
PICTURE_WINDOW = 256  # dropped pictures remembered (at 15 dropped/s: ~17 s)
UP_SWITCH_KEYFRAME_S = 2.0
MEASURE_S = 2.0  # each level's frame rate and bitrate share, counted over this long
# a level covers a requested frame rate it reaches this share of (frame counts over a
# window jitter by one or two: 15 asked of a 30 fps camera is TL0+TL1, not everything)
FPS_TOLERANCE = 0.8

# share of the frame rate each level gives at an L1T3 camera (TL0 1/4, TL1 another 1/4,
# TL2 the other half), until measured
LEVEL_SHARE = (0.25, 0.5, 1.0)
# share of the bitrate, until measured: libwebrtc's VP8 rate split for 3 layers (40/20/40)
DEFAULT_SHARE = (0.4, 0.6, 1.0)
# What libwebrtc's VP8 L1T3 sends (DefaultTemporalLayers), frame after frame: (TID, layer
# sync). Not used on the packet path: the simulated publishers of the tests and benches
# send it, so that they exercise what Chromium does.
L1T3_PATTERN = (
    (0, False),
    (2, True),
    (1, True),
    (2, False),
    (0, False),
    (2, True),
    (1, False),
    (2, False),
)


class Level:
    """One temporal level of one up track: the packets (``fseq``) and pictures
    (timestamps) it dropped, and its started down tracks (a C array for the fan-out)."""

    __slots__ = (
        "base",
        "downs",
        "dropped",
        "highest_kept",
        "highest_kept_ts",
        "index",
        "picture_base",
        "pictures",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.dropped: list[int] = []  # sorted; ``base`` older ones forgotten
        self.base = 0
        self.pictures: list[int] = []  # timestamps of dropped pictures, sorted
        self.picture_base = 0
        self.highest_kept = -1
        self.highest_kept_ts = -1
        self.downs = fastpath.DownList()

    def skip(self, fseq: int) -> int:
        """How many packets before ``fseq`` this level dropped."""
        d = self.dropped
        if not d or d[-1] < fseq:
            return self.base + len(d)
        return self.base + bisect.bisect_left(d, fseq)

    def picture_skip(self, uts: int) -> int:
        """How many pictures before the one at ``uts`` this level dropped."""
        p = self.pictures
        if not p or p[-1] < uts:
            return self.picture_base + len(p)
        return self.picture_base + bisect.bisect_left(p, uts)

    def drop(self, fseq: int, uts: int) -> None:
        """Packet ``fseq`` (of the picture at ``uts``) is above this level. A late one
        below what the level already forwarded cannot be taken out of numbers given out:
        its downs see a hole between pictures there, harmless to a decoder. Both lists
        stay bounded whatever the publisher sends (out-of-order numbers insert)."""
        if fseq <= self.highest_kept:
            return
        d = self.dropped
        if not d or d[-1] < fseq:
            d.append(fseq)
            if d[0] < fseq - 2 * WINDOW:
                cut = bisect.bisect_left(d, fseq - WINDOW)
                self.base += cut
                del d[:cut]
        else:
            i = bisect.bisect_left(d, fseq)
            if d[i] != fseq:
                d.insert(i, fseq)
                if len(d) > 2 * WINDOW:
                    self.base += len(d) - WINDOW
                    del d[: len(d) - WINDOW]
        if uts > self.highest_kept_ts:
            p = self.pictures
            if not p or p[-1] < uts:
                p.append(uts)
            else:
                i = bisect.bisect_left(p, uts)
                if p[i] == uts:
                    return
                p.insert(i, uts)
            if len(p) > 2 * PICTURE_WINDOW:
                cut = len(p) - PICTURE_WINDOW
                self.picture_base += cut
                del p[:cut]

    def fseq_of(self, g: int) -> int:
        """The packet (``fseq``) this level numbers ``g`` (``fseq - skip``):
        the smallest ``u`` with ``u == g + dropped up to u``, found from below."""
        d = self.dropped
        base = self.base
        u = g + base
        while True:
            nxt = g + base + bisect.bisect_right(d, u)
            if nxt == u:
                return u
            u = nxt

    def clear(self) -> None:
        self.downs.clear()


def level_for_fps(fps: float, level_fps: tuple[float, ...]) -> int:
    """The lowest level whose frame rate covers ``fps`` (0: no limit), from a layer's
    measured frame rate per level (empty: not measured yet, assume 30 fps L1T3)."""
    if fps <= 0:
        return ALL
    rates = level_fps or tuple(30.0 * share for share in LEVEL_SHARE)
    for index, rate in enumerate(rates[:LEVELS]):
        if rate >= fps * FPS_TOLERANCE:
            return index
    return ALL


__all__ = ["ALL", "DEFAULT_SHARE", "LEVELS", "LEVEL_SHARE", "Level", "level_for_fps"]
