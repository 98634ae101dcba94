"""Rates and bandwidth estimates.

* :class:`RateMeter` - bytes/packets per second over a sliding window (stats).
* :class:`DownEstimate` - what one subscriber can take: its own REMB when it sends one,
  else a loss-based estimate from its receiver reports (Galene/GCC style: back off
  above 10 % loss, probe up below 2 %).

A subscriber's REMB comes from a receive-side estimator (libwebrtc's AIMD over
abs-send-time delays), which never goes far above the rate it receives: it says
something about the path only when it falls below what is sent (overuse seen). Taken as
a ceiling while it merely followed the incoming rate, it held a single-layer Chromium
publisher at whatever resolution its encoder started with (measured: 480x270 at ~360
kbps for 13 s, 960x540 after 40 s, never 720p; bench/uplink.py); and a REMB that falls
because the publisher sends less (a simpler picture) is not congestion either.
"""

from __future__ import annotations

import time

MIN_BITRATE = 100_000
MAX_BITRATE = 4_000_000
START_BITRATE = 1_500_000
REMB_VALID_S = 5.0
REMB_DROP = 0.95  # a REMB this much below the previous one signals congestion
CONGESTION_HOLD_S = 2.0
CONGESTED = 0.95  # ... and below this share of the rate sent to the subscriber


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

    __slots__ = (
        "_congested_until",
        "_loss_estimate",
        "_remb",
        "_remb_time",
        "fraction_lost",
        "lossy_until",
    )

    def __init__(self, start: int = START_BITRATE) -> None:
        self._remb = 0
        self._remb_time = 0.0
        self._congested_until = 0.0
        self.lossy_until = 0.0  # packets are being lost: step down without waiting
        self._loss_estimate = float(start)
        self.fraction_lost = 0.0

    @property
    def remb(self) -> int:
        """The subscriber's last REMB value (0 if it never sent one)."""
        return self._remb

    def on_remb(self, bitrate: int, now: float, sending_bps: float = 0.0) -> bool:
        """Take a REMB; True if it signals congestion (it fell, and below what is sent
        to the subscriber when ``sending_bps``, its RTP payload rate, is known)."""
        dropped = bool(self._remb) and bitrate < self._remb * REMB_DROP
        if sending_bps > 0 and bitrate >= CONGESTED * sending_bps:
            dropped = False  # it fell with the rate sent: the publisher sends less
        if dropped:
            # the receiver's estimator saw overuse (it cuts to ~0.85x what it receives)
            self._congested_until = now + CONGESTION_HOLD_S
            self._loss_estimate = max(MIN_BITRATE, min(self._loss_estimate, float(bitrate)))
        self._remb = bitrate
        self._remb_time = now
        return dropped

    def on_loss(self, fraction_lost: float, now: float | None = None) -> bool:
        """Take a receiver report's loss fraction; True if it signals congestion (more
        than 10 % lost: then the estimate holds below the REMB for a while too)."""
        self.fraction_lost = fraction_lost
        lossy = fraction_lost > 0.10
        if lossy:
            self._loss_estimate *= 1.0 - 0.5 * fraction_lost
            if self._remb:
                self._loss_estimate = min(self._loss_estimate, self._remb * (1 - fraction_lost))
            if now is not None:
                self._congested_until = now + CONGESTION_HOLD_S
                self.lossy_until = now + CONGESTION_HOLD_S
        elif fraction_lost < 0.02:
            self._loss_estimate *= 1.08
        self._loss_estimate = min(MAX_BITRATE, max(MIN_BITRATE, self._loss_estimate))
        return lossy

    def value(self, now: float, probing: bool = False) -> int:
        """The estimate: the loss-based one, capped by a fresh REMB. ``probing`` (a
        simulcast track choosing its layer): the REMB caps only while it is falling
        (for :data:`CONGESTION_HOLD_S` after a drop) - a receiver's REMB never rises
        much above what it receives (libwebrtc caps it near 1.5x, and grows it ~8 %/s),
        so as a ceiling it would keep a low layer from ever earning a higher one."""
        estimate = self._loss_estimate
        if self._remb and now - self._remb_time < REMB_VALID_S:
            if not probing or now < self._congested_until:
                estimate = min(estimate, float(self._remb))
            else:
                estimate = max(estimate, float(self._remb))
        return int(max(MIN_BITRATE, estimate))


def combine(estimates: list[int], default: int = MAX_BITRATE) -> int:
    """What to ask a publisher for: the smallest subscriber estimate (no simulcast
    yet, so the weakest subscriber sets the pace), clamped."""
    if not estimates:
        return default
    return max(MIN_BITRATE, min(MAX_BITRATE, min(estimates)))
