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

Only simulcast tracks change layers; a single-layer video is only paused when hidden
(its publisher already follows the weakest subscriber, :meth:`UpTrack.bitrate_for_publisher`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vtp.sfu.downtrack import DownTrack
    from vtp.sfu.uptrack import UpTrack

INTERVAL_S = 0.25
NOMINAL_BPS = (150_000, 500_000, 1_500_000, 2_500_000)
UP_HEADROOM = 0.85  # a higher layer must need at most this share of the estimate
STAY_TOLERANCE = 1.25  # the current layer stays while it needs at most this much of it
PROBATION_S = 3.0
BACKOFF_START_S = 4.0
BACKOFF_MAX_S = 30.0


def cost(layer: UpTrack, index: int, now: float) -> int:
    """What forwarding ``layer`` (at ``index``, lowest first) costs, in bits/s."""
    if layer.active(now) and layer.rate.bps > 0:
        return int(layer.rate.bps)
    return NOMINAL_BPS[min(index, len(NOMINAL_BPS) - 1)]


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


@dataclass(frozen=True, slots=True)
class Choice:
    down: DownTrack
    layer: UpTrack | None  # None: paused
    reason: str  # when paused: "hidden" or "bandwidth"
    # the layer it would get if every layer flowed (dynacast: the publisher is asked
    # for it even while it sends no such layer)
    wanted: UpTrack | None = None


class Allocator:
    """One subscriber peer's layer allocation (state: the up-switch back-offs)."""

    def __init__(self) -> None:
        self._probation: dict[int, _Probation] = {}
        self.last_run = 0.0

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
        estimates = {
            id(d): d.estimate.value(now, 0.0 if d.paused or d.waiting else d.up.rate.bps)
            for d, _ in downs
        }
        remaining = sum(estimates.values()) if budget is None else budget
        choices: dict[int, Choice] = {}
        plans: list[tuple[DownTrack, list[UpTrack], int, int, set[int], UpTrack]] = []
        for down, _speaker in sorted(downs, key=lambda item: _priority(item[0], item[1])):
            layers = down.track.ordered_layers()
            if len(layers) < 2:
                layer = down.up if down.visible else None
                choices[id(down)] = Choice(down, layer, "" if down.visible else "hidden")
                continue
            wanted = wanted_index(down, layers)
            if wanted is None:
                choices[id(down)] = Choice(down, None, "hidden")
                continue
            # only flowing layers are forwarded (a publisher drops its top layers when
            # its own bandwidth is short, or when dynacast turned them off)
            flowing_list = [i for i, layer in enumerate(layers) if layer.active(now)]
            first = flowing_list[0] if flowing_list else 0
            lowest = cost(layers[first], first, now)
            limit = estimates[id(down)]
            if down.paused:
                limit = int(limit * UP_HEADROOM)  # resuming needs headroom too
            elif down.current is layers[first] and down.target is None and not down.waiting:
                limit = int(limit * STAY_TOLERANCE)
            if lowest > min(remaining, limit):
                choices[id(down)] = Choice(down, None, "bandwidth")
                continue
            remaining -= lowest
            fits = [i for i in range(wanted + 1) if cost(layers[i], i, now) <= estimates[id(down)]]
            wanted_layer = layers[fits[-1] if fits else first]
            choices[id(down)] = Choice(down, layers[first], "", wanted_layer)
            plans.append((down, layers, wanted, first, set(flowing_list), wanted_layer))
        for down, layers, wanted, first, flowing, wanted_layer in plans:
            fresh = down.waiting and not down.paused and down.target is None
            current = wanted if fresh else _index(down.target or down.current, layers)
            probation = self._probation.setdefault(id(down), _Probation())
            estimate = estimates[id(down)]
            if (
                probation.raised_to >= 0
                and now - probation.raised_at < PROBATION_S
                and current >= probation.raised_to
                and estimate < cost(layers[probation.raised_to], probation.raised_to, now)
            ):
                # the last up-switch did not hold: back off before trying again
                probation.blocked_until = now + probation.backoff
                probation.backoff = min(BACKOFF_MAX_S, probation.backoff * 2)
                probation.raised_to = -1
            base = cost(layers[first], first, now)
            for i in range(wanted, first, -1):
                if i not in flowing:
                    continue
                need = cost(layers[i], i, now)
                going_up = i > current
                if going_up and now < probation.blocked_until:
                    continue
                if going_up:
                    allowed = estimate * UP_HEADROOM
                elif i == current and not fresh:
                    allowed = estimate * STAY_TOLERANCE
                else:
                    allowed = estimate
                if need <= allowed and need - base <= remaining:
                    remaining -= need - base
                    choices[id(down)] = Choice(down, layers[i], "", wanted_layer)
                    if going_up:
                        probation.raised_at = now
                        probation.raised_to = i
                    break
            if (
                probation.raised_to >= 0
                and now - probation.raised_at >= PROBATION_S
                and probation.backoff > BACKOFF_START_S
            ):
                probation.backoff = max(BACKOFF_START_S, probation.backoff / 2)
        return [choices[id(d)] for d, _ in downs]


def _index(layer: UpTrack | None, layers: list[UpTrack]) -> int:
    for i, candidate in enumerate(layers):
        if candidate is layer:
            return i
    return -1


def _priority(down: DownTrack, speaker: bool) -> tuple[int, int]:
    area = down.max_width * down.max_height if down.max_width or down.max_height else 1 << 30
    return (0 if speaker else 1, -area)


__all__ = ["Allocator", "Choice", "cost", "wanted_index"]
