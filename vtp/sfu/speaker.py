"""Active-speaker detection from RFC 6464 audio levels (no audio is decoded).

Each audio up track accumulates the levels carried by its packets; every interval the
detector scores each track (mean loudness, 127 - dBov, over voiced packets) and names the
loudest one above a threshold, with hysteresis so the speaker does not flap."""

from __future__ import annotations

from collections.abc import Callable

# A packet is voiced (counts as talk time) when louder than -50 dBov.
VOICED_BELOW_DBOV = 50


class LevelMeter:
    """Per-track accumulator fed on the packet path (integer adds and one compare)."""

    __slots__ = ("count", "total", "voiced")

    def __init__(self) -> None:
        self.total = 0
        self.count = 0
        self.voiced = 0

    def add(self, level_byte: int) -> None:
        dbov = level_byte & 0x7F
        self.total += 127 - dbov
        self.count += 1
        if dbov < VOICED_BELOW_DBOV:
            self.voiced += 1

    def take(self) -> tuple[float, float]:
        """(mean loudness score, share of voiced packets) since the last take."""
        count = self.count
        if not count:
            return 0.0, 0.0
        result = (self.total / count, self.voiced / count)
        self.total = self.count = self.voiced = 0
        return result


class SpeakerDetector:
    """Chooses the active speaker among named level meters."""

    def __init__(
        self,
        on_change: Callable[[str | None], None],
        threshold: float = 127 - 55,  # louder than -55 dBov on average
        hysteresis: float = 6.0,
        hold_intervals: int = 3,
    ) -> None:
        self._on_change = on_change
        self._threshold = threshold
        self._hysteresis = hysteresis
        self._hold = hold_intervals
        self._silent_for = 0
        self.current: str | None = None

    def update(self, scores: dict[str, float]) -> None:
        """Feed one interval's scores (owner id -> score)."""
        best: str | None = None
        best_score = self._threshold
        for owner, score in scores.items():
            if score > best_score:
                best, best_score = owner, score
        current_score = scores.get(self.current, 0.0) if self.current else 0.0
        if best is None:
            if self.current is not None:
                self._silent_for += 1
            return
        self._silent_for = 0
        if best == self.current:
            return
        if (
            self.current is None
            or current_score < self._threshold
            or (best_score > current_score + self._hysteresis)
        ):
            self.current = best
            self._on_change(best)
