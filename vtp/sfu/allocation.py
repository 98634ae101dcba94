"""Which encoding (layer) of each published video a subscriber gets.

Per subscriber peer, every :data:`INTERVAL_S` and at once when its preferences change,
its video down tracks are given layers within its bandwidth:

* **wanted**: a hidden video (``visible=False``) gets nothing; otherwise the smallest
  layer whose keyframe size covers the preferred ``max_width``/``max_height`` (the top
  layer without preferences, or when none covers them);
* **estimate**: each down track's :class:`~vtp.sfu.estimator.DownEstimate` (the
  subscriber's REMB, else its loss reports) caps that track; the peer's budget is the sum
  of its video tracks' estimates;
* **order**: the active speaker's video first, then the largest preferred tile. In that
  order each video first gets its lowest layer (none fits: it pauses, audio keeps
  flowing), then each is raised as far as the rest of the budget allows;
* a layer's **cost** is its measured bitrate while it flows, else a nominal figure for
  its position (:data:`NOMINAL_BPS`); going up needs headroom (:data:`UP_HEADROOM`),
  staying tolerates a dip (:data:`STAY_TOLERANCE`: receivers' estimates swing below the
  rate they get), a video not started yet takes what fits; an up-switch undone by
  congestion (the subscriber's estimate fell below the layer it was given within
  :data:`PROBATION_S`) is retried only after a growing back-off.

Why a receiver-side estimate (REMB + loss) and not a send-side one from transport-cc on
the down leg: it needs nothing more per forwarded packet (transport-wide sequence numbers
would have to be written and remembered per subscriber packet in the C send path, and a
delay-based estimator run per connection in Python), and Chromium subscribers already
send REMB (aiortc offers ``goog-remb``) and receiver reports. Its limits, measured with
Chromium: a REMB grows only ~8 %/s and stays near 1.5x what it receives, so it is used
as a ceiling only while it falls (:meth:`~vtp.sfu.estimator.DownEstimate.value`), and
going up after a drop is probing by switching (with the back-off above); a link freed
from 600 kbit/s took ~10-20 s to get 720p back.

Temporal layers (VP8 ``L1T3``, :mod:`vtp.sfu.temporal`) are a finer step: each spatial
layer is tried at its full frame rate, then at half of it (TL2 dropped: ~60 % of its
bitrate), before the next layer down; the lowest layer may also go to a quarter (TL0
only) before the video pauses. Lower than half the rate is not used above the lowest
layer: a 720p picture at 7.5 fps looks worse than 360p at 30 fps for about the same
bitrate. A subscriber's ``fps`` preference (``max_fps``) caps the level on every layer
(and so lowers its cost), simulcast or not.

Only simulcast tracks change layers; a single-layer video is only paused when hidden
(its publisher already follows the weakest subscriber, :meth:`UpTrack.bitrate_for_publisher`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vtp.sfu import temporal

if TYPE_CHECKING:
    from vtp.sfu.downtrack import DownTrack
    from vtp.sfu.uptrack import UpTrack

MEASURED_AFTER_S = 2.0
INTERVAL_S = 0.5  # and at once when a subscriber's REMB falls (DownTrack.on_congestion)
NOMINAL_BPS = (150_000, 500_000, 1_500_000, 2_500_000)
UP_HEADROOM = 0.85  # a higher layer must need at most this share of the estimate
STAY_TOLERANCE = 1.25  # the current layer stays while it needs at most this much of it
PROBATION_S = 3.0
DOWN_AFTER_S = 0.5
PAUSE_AFTER_S = 2.0
BACKOFF_START_S = 4.0
BACKOFF_MAX_S = 30.0


def cost(layer: UpTrack, index: int, now: float) -> int:
    """What forwarding ``layer`` (at ``index``, lowest first) costs, in bits/s: its
    measured rate once it has flowed for :data:`MEASURED_AFTER_S` (a layer (re)started
    by dynacast opens with a keyframe burst), else a nominal figure."""
    if layer.active(now) and now - layer.active_since >= MEASURED_AFTER_S and layer.rate.bps:
        return int(layer.rate.bps)
    return NOMINAL_BPS[min(index, len(NOMINAL_BPS) - 1)]


def fps_level(down: DownTrack, layer: UpTrack) -> int:
    """The temporal level the subscriber's ``fps`` preference asks of ``layer``."""
    if not down.max_fps or layer.max_tid < 1:
        return temporal.ALL
    level = temporal.level_for_fps(down.max_fps, layer.level_fps)
    return temporal.ALL if level >= layer.max_tid else level


def temporal_steps(down: DownTrack, layer: UpTrack, lowest: bool) -> list[int]:
    """Temporal levels to try on ``layer``, highest first (see the module's docstring)."""
    cap = fps_level(down, layer)
    if layer.max_tid < 1:
        return [cap]
    steps = [temporal.ALL, 1, 0] if lowest else [temporal.ALL, 1]
    out: list[int] = []
    for step in steps:
        level = min(step, cap)
        if level >= layer.max_tid:
            level = temporal.ALL
        if level not in out:
            out.append(level)
    return out


def temporal_cost(layer: UpTrack, cost_bps: int, level: int) -> int:
    if level >= temporal.ALL or level >= len(layer.level_share):
        return cost_bps
    return int(cost_bps * layer.level_share[level])


def wanted_index(down: DownTrack, layers: list[UpTrack]) -> int | None:
    """The layer the subscriber's preferences ask for (None: hidden)."""
    if not down.visible:
        return None
    top = len(layers) - 1
    if not down.max_width and not down.max_height:
        return top
    for i, layer in enumerate(layers):
        if not layer.width:
            return top  # sizes not known yet: no reason to hold back
        if layer.width >= down.max_width and layer.height >= down.max_height:
            return i
    return top


@dataclass
class _Probation:
    """Up-switch back-off for one down track."""

    backoff: float = BACKOFF_START_S
    blocked_until: float = 0.0
    raised_at: float = 0.0
    raised_to: int = -1
    low_since: float = 0.0  # the estimate has been short of the current layer since


@dataclass(frozen=True, slots=True)
class Choice:
    down: DownTrack
    layer: UpTrack | None  # None: paused
    reason: str  # when paused: "hidden" or "bandwidth"
    # the layer it would get if every layer flowed (dynacast: the publisher is asked
    # for it even while it sends no such layer)
    wanted: UpTrack | None = None
    temporal: int = temporal.ALL  # the temporal level cap on ``layer``


class Allocator:
    """One subscriber peer's layer allocation (state: the up-switch back-offs)."""

    def __init__(self) -> None:
        self._probation: dict[int, _Probation] = {}
        # peers of a room allocate at different moments of the interval, not all at once
        self.last_run = -random.random() * INTERVAL_S

    def forget(self, down: DownTrack) -> None:
        self._probation.pop(id(down), None)

    def allocate(
        self, downs: list[tuple[DownTrack, bool]], now: float, budget: int | None = None
    ) -> list[Choice]:
        """Choose a layer (or a pause) for each ``(video down track, is the active
        speaker's)``. ``budget`` defaults to the sum of the tracks' estimates."""
        self.last_run = now
        live = {id(d) for d, _ in downs}
        for key in [k for k in self._probation if k not in live]:
            del self._probation[key]
        estimates = {id(d): d.estimate.value(now, probing=True) for d, _ in downs}
        remaining = sum(estimates.values()) if budget is None else budget
        choices: dict[int, Choice] = {}
        ordered: dict[int, list[UpTrack]] = {}
        # per published track (shared by the peer's downs): layers, their costs, which flow
        tracks: dict[int, tuple[list[UpTrack], list[int], list[int]]] = {}
        plans: list[
            tuple[DownTrack, list[UpTrack], list[int], int, int, set[int], UpTrack, int]
        ] = []
        for down, _speaker in sorted(downs, key=lambda item: _priority(item[0], item[1])):
            info = tracks.get(id(down.track))
            if info is None:
                layers = down.track.ordered_layers()
                info = tracks[id(down.track)] = (
                    layers,
                    [cost(layer, i, now) for i, layer in enumerate(layers)],
                    [i for i, layer in enumerate(layers) if layer.active(now)],
                )
            layers, costs, flowing_list = info
            ordered[id(down)] = layers
            if len(layers) < 2:
                layer = down.up if down.visible else None
                choices[id(down)] = Choice(
                    down, layer, "" if down.visible else "hidden", None, fps_level(down, down.up)
                )
                continue
            wanted = wanted_index(down, layers)
            if wanted is None:
                choices[id(down)] = Choice(down, None, "hidden")
                continue
            # only flowing layers are forwarded (a publisher drops its top layers when
            # its own bandwidth is short, or when dynacast turned them off)
            first = flowing_list[0] if flowing_list else 0
            lowest_level = temporal_steps(down, layers[first], True)[-1]
            lowest = temporal_cost(layers[first], costs[first], lowest_level)
            limit = estimates[id(down)]
            if down.paused:
                limit = int(limit * UP_HEADROOM)  # resuming needs headroom too
            elif (
                down.current is layers[first]
                and down.target is None
                and not down.waiting
                and down.max_temporal == lowest_level
            ):
                limit = int(limit * STAY_TOLERANCE)
            estimate = estimates[id(down)]
            fits = [i for i in range(wanted + 1) if costs[i] <= estimate]
            # what it would take if every layer flowed: dynacast asks the publisher for it
            wanted_layer = layers[fits[-1]] if fits else None
            if lowest > min(remaining, limit):
                # nothing that flows fits: pause (held for PAUSE_AFTER_S below, long
                # enough for a publisher to start sending the lower layer it is asked for)
                self._probation.setdefault(id(down), _Probation())
                choices[id(down)] = Choice(down, None, "bandwidth", wanted_layer)
                continue
            remaining -= lowest
            if wanted_layer is None:
                wanted_layer = layers[first]
            choices[id(down)] = Choice(down, layers[first], "", wanted_layer, lowest_level)
            plans.append(
                (down, layers, costs, wanted, first, set(flowing_list), wanted_layer, lowest)
            )
        for down, layers, costs, wanted, first, flowing, wanted_layer, base in plans:
            fresh = down.waiting and not down.paused and down.target is None
            current = wanted if fresh else _index(down.target or down.current, layers)
            probation = self._probation.setdefault(id(down), _Probation())
            estimate = estimates[id(down)]
            if (
                probation.raised_to >= 0
                and now - probation.raised_at < PROBATION_S
                and current >= probation.raised_to
                and estimate < costs[probation.raised_to]
            ):
                # the last up-switch did not hold: back off before trying again
                probation.blocked_until = now + probation.backoff
                probation.backoff = min(BACKOFF_MAX_S, probation.backoff * 2)
                probation.raised_to = -1
            current_level = temporal.ALL if fresh else down.max_temporal
            found = False
            for i in range(wanted, first - 1, -1):
                if i not in flowing or found:
                    continue
                spatial_up = i > current
                if spatial_up and now < probation.blocked_until:
                    continue
                for level in temporal_steps(down, layers[i], i == first):
                    need = temporal_cost(layers[i], costs[i], level)
                    if i == first and need <= base:
                        break  # (what it has already: the choice made above)
                    going_up = spatial_up or (i == current and level > current_level)
                    if going_up:
                        allowed = estimate * UP_HEADROOM
                    elif i == current and level == current_level and not fresh:
                        allowed = estimate * STAY_TOLERANCE
                    else:
                        allowed = estimate
                    if need <= allowed and need - base <= remaining:
                        remaining -= need - base
                        choices[id(down)] = Choice(down, layers[i], "", wanted_layer, level)
                        if spatial_up:
                            probation.raised_at = now
                            probation.raised_to = i
                        found = True
                        break
            if (
                probation.raised_to >= 0
                and now - probation.raised_at >= PROBATION_S
                and probation.backoff > BACKOFF_START_S
            ):
                probation.backoff = max(BACKOFF_START_S, probation.backoff / 2)
        self._hold_drops(downs, choices, ordered, now)
        return [choices[id(d)] for d, _ in downs]

    def _hold_drops(
        self,
        downs: list[tuple[DownTrack, bool]],
        choices: dict[int, Choice],
        ordered: dict[int, list[UpTrack]],
        now: float,
    ) -> None:
        """A step down (or a pause) for bandwidth is taken only once the estimate has
        stayed short for :data:`DOWN_AFTER_S` (:data:`PAUSE_AFTER_S`): a receiver's
        estimate dips for a moment on a busy machine, and every switch costs a keyframe.
        A layer the publisher stopped sending is left at once, and a step down while the
        subscriber reports loss is taken at once."""
        for down, _ in downs:
            choice = choices[id(down)]
            state = self._probation.get(id(down))
            if state is None:
                continue
            layers = ordered[id(down)]
            if len(layers) < 2:
                continue
            was = down.target or down.current
            wanted = wanted_index(down, layers)
            if down.paused or down.waiting or was is None or wanted is None:
                state.low_since = 0.0
                continue
            cur = _index(was, layers)
            new = _index(choice.layer, layers) if choice.layer is not None else -1
            if not (new < cur <= wanted and was.active(now)):
                state.low_since = 0.0
                continue
            if not state.low_since:
                state.low_since = now
            hold = PAUSE_AFTER_S if choice.layer is None else DOWN_AFTER_S
            if choice.layer is not None and now < down.estimate.lossy_until:
                hold = 0.0  # packets are being lost: no dip to wait out
            if now - state.low_since < hold:
                choices[id(down)] = Choice(down, was, "", choice.wanted, down.max_temporal)


def _index(layer: UpTrack | None, layers: list[UpTrack]) -> int:
    for i, candidate in enumerate(layers):
        if candidate is layer:
            return i
    return -1


def _priority(down: DownTrack, speaker: bool) -> tuple[int, int]:
    area = down.max_width * down.max_height if down.max_width or down.max_height else 1 << 30
    return (0 if speaker else 1, -area)


__all__ = ["Allocator", "Choice", "cost", "fps_level", "temporal_steps", "wanted_index"]
