"""Rates and bandwidth estimates.

* :class:`RateMeter` - bytes/packets per second over a sliding window (stats).
* :class:`DownEstimate` - what one subscriber can take: a loss-based estimate from its
  receiver reports (Galene/GCC style: back off above 10 % loss, probe up below 2 %),
  bounded by its REMB once that REMB has shown congestion.

A subscriber's REMB comes from a receive-side estimator (libwebrtc's AIMD over
abs-send-time delays), which never goes above about 1.5 times the rate it receives: it
measures the path only when it falls, below what is sent to it (overuse seen). Taken as
a ceiling while it merely follows the incoming rate, it held Chromium publishers at
whatever resolution their encoder started with (measured: 480x270 at ~360 kbps for the
first 13 s, 960x540 after 40 s, never 720p; bench/uplink.py). So a REMB bounds the
estimate only from the first one that fell (by :data:`DROP` or more from the previous
one) below :data:`CONGESTED` times the rate sent to that subscriber; that bound then
grows back by :data:`RECOVERY_PER_S` while the REMBs show no congestion. (A first REMB,
when the subscriber's estimator starts from the measured rate, is not a fall.)
"""

from __future__ import annotations

import time

MIN_BITRATE = 100_000
MAX_BITRATE = 4_000_000
# no loss seen yet is no reason to hold a publisher back (a lower start held Chromium
# below 720p for its first 7-10 s); the first lossy reports bring it down
START_BITRATE = MAX_BITRATE
REMB_VALID_S = 5.0
CONGESTED = 0.95  # a REMB below this share of the rate sent to the subscriber
DROP = 0.9  # ... that fell to this share of the previous REMB or lower
RECOVERY_PER_S = 0.08  # growth of the REMB bound while no congestion is reported
REMB_CONGESTED = 1.1


class RateMeter:
    """Exponentially smoothed byte rate (bits per second)."""

    __slots__ = ("_bytes", "_last", "bps")

    def __init__(self) -> None:
        self._bytes = 0
        self._last = time.monotonic()
        self.bps = 0.0

    def add(self, nbytes: int) -> None:
        self._bytes += nbytes

    def tick(self, now: float) -> float:
        elapsed = now - self._last
        if elapsed >= 0.25:
            rate = self._bytes * 8 / elapsed
            self.bps = rate if self.bps == 0 else 0.7 * self.bps + 0.3 * rate
            self._bytes = 0
            self._last = now
        return self.bps


class DownEstimate:
    """The bitrate one subscriber can take for one video track."""

    __slots__ = ("_ceiling", "_loss_estimate", "_remb", "_remb_time", "fraction_lost")

    def __init__(self) -> None:
        self._remb = 0
        self._remb_time = 0.0
        self._ceiling: float | None = None  # from REMBs, once they showed congestion
        self._loss_estimate = float(START_BITRATE)
        self.fraction_lost = 0.0

    @property
    def remb(self) -> int:
        """The subscriber's last REMB value (0 if it never sent one)."""
        return self._remb

    def on_remb(self, bitrate: int, now: float, sending_bps: float = 0.0) -> None:
        """A REMB from the subscriber; ``sending_bps``: what was being sent to it (RTP
        payload bits per second, 0 if not known)."""
        ceiling = self._ceiling
        fell = 0 < bitrate <= DROP * self._remb and now - self._remb_time < REMB_VALID_S
        if fell and bitrate < CONGESTED * sending_bps:
            self._ceiling = float(bitrate)
        elif ceiling is not None:
            if now - self._remb_time > REMB_VALID_S:
                self._ceiling = None
            else:
                grown = ceiling * (1.0 + RECOVERY_PER_S * min(1.0, now - self._remb_time))
                self._ceiling = min(float(MAX_BITRATE), max(float(bitrate), grown))
        self._remb = bitrate
        self._remb_time = now

    def on_loss(self, fraction_lost: float) -> None:
        self.fraction_lost = fraction_lost
        if fraction_lost > 0.10:
            self._loss_estimate *= 1.0 - 0.5 * fraction_lost
        elif fraction_lost < 0.02:
            self._loss_estimate *= 1.08
        self._loss_estimate = min(MAX_BITRATE, max(MIN_BITRATE, self._loss_estimate))

    def value(self, now: float, sending: float = 0.0) -> int:
        """The estimate. With ``sending`` (what this track is sent now, bits/s): a REMB
        that does not clear it by :data:`REMB_CONGESTED` signals congestion and is the
        estimate; one above it is no ceiling - a receiver's REMB never rises much above
        what it receives (libwebrtc caps it near 1.5x), so a lower simulcast layer
        could never earn a higher one - and the loss-based estimate may go beyond it.
        Without (the REMB for a single-layer publisher): the loss-based estimate, bounded
        by the REMB only once one fell (see the module docstring); a REMB that merely
        tracks the incoming rate cut Chromium's target to its current rate at every new
        subscription."""
        estimate = self._loss_estimate
        if self._remb and now - self._remb_time < REMB_VALID_S:
            if sending <= 0:
                # (a single-layer publisher's REMB: bounded only from a REMB that fell)
                if self._ceiling is not None:
                    estimate = min(estimate, self._ceiling)
            elif self._remb < sending * REMB_CONGESTED:
                estimate = float(self._remb)
            else:
                estimate = max(estimate, float(self._remb))
        return int(max(MIN_BITRATE, estimate))


def combine(estimates: list[int], default: int = MAX_BITRATE) -> int:
    """What to ask a publisher for: the smallest subscriber estimate (no simulcast
    yet, so the weakest subscriber sets the pace), clamped."""
    if not estimates:
        return default
    return max(MIN_BITRATE, min(MAX_BITRATE, min(estimates)))
