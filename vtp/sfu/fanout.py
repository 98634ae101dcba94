"""Fan-out membership: which down tracks one up track (one layer) writes to, and how.

A down track is, on a given layer, in one of three states (:class:`Member`) or absent:

- ``WAITING``: attached but not started (new, restarted, or waiting on a layer it has not
  started on): the layer hands it each packet from Python (:meth:`DownTrack.write
  <vtp.sfu.downtrack.DownTrack.write>`) until a keyframe starts it;
- ``STARTED``: in the compiled fan-out (:mod:`vtp.sfu.fastpath`), in the C array of its
  temporal level: ``started`` when uncapped, else that :class:`~vtp.sfu.temporal.Level`'s
  ``downs``. A started down whose level is to change is also ``changing`` (its move
  waits for a picture the subscriber can follow);
- ``SWITCHING``: simulcast, on the layer it moves to: it joins at that layer's next
  keyframe (its own layer keeps writing to it meanwhile, unless it is paused).

Every change of state goes through this object, so the containers the packet path
reads (``members``, ``waiting``, the C arrays, ``switching``, ``changing`` and
``levels_used``) never disagree. The packet path only reads them: the tuples are
replaced, never changed in place, so a loop over one survives a change made by a
callback inside it.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from vtp.sfu import fastpath, temporal

if TYPE_CHECKING:
    from vtp.sfu.downtrack import DownTrack


class Member(enum.Enum):
    WAITING = "waiting"
    STARTED = "started"
    SWITCHING = "switching"


class Fanout:
    __slots__ = (
        "changing",
        "levels",
        "levels_used",
        "members",
        "started",
        "switching",
        "waiting",
    )

    def __init__(self) -> None:
        # the downs this layer writes to (WAITING or STARTED), in the order they came
        self.members: dict[DownTrack, Member] = {}
        self.waiting: tuple[DownTrack, ...] = ()
        self.started = fastpath.DownList()  # STARTED at no temporal cap
        # temporal levels (VP8): created at the first packet with a TID
        self.levels: list[temporal.Level] | None = None
        self.changing: tuple[DownTrack, ...] = ()  # STARTED, level to change
        # the per-packet switch: some down is capped at a level or changing level
        self.levels_used = False
        self.switching: tuple[DownTrack, ...] = ()

    def state(self, down: DownTrack) -> Member | None:
        member = self.members.get(down)
        if member is None and down in self.switching:
            return Member.SWITCHING
        return member

    # --- transitions -------------------------------------------------------------------

    def attach(self, down: DownTrack, started: bool) -> None:
        """Absent (or SWITCHING here, or WAITING) -> WAITING or STARTED."""
        self.cancel_switch(down)
        if started:
            self.start(down)
        elif down not in self.members:
            self.members[down] = Member.WAITING
            self.waiting = (*self.waiting, down)

    def start(self, down: DownTrack) -> None:
        """-> STARTED, in the array of ``down.temporal``."""
        member = self.members.get(down)
        if member is Member.STARTED:
            return
        if member is Member.WAITING:
            self.waiting = tuple(d for d in self.waiting if d is not down)
        self.members[down] = Member.STARTED
        self._array(down.temporal).add(down, down.state)
        if down.temporal < temporal.ALL:
            self._update_levels_used()

    def stop(self, down: DownTrack) -> None:
        """STARTED -> WAITING (it waits for a keyframe again)."""
        if self.members.get(down) is not Member.STARTED:
            return
        self._leave_arrays(down)
        self.members[down] = Member.WAITING
        self.waiting = (*self.waiting, down)

    def detach(self, down: DownTrack) -> None:
        """WAITING or STARTED -> absent."""
        member = self.members.pop(down, None)
        if member is Member.WAITING:
            self.waiting = tuple(d for d in self.waiting if d is not down)
        elif member is Member.STARTED:
            self._leave_arrays(down)

    def switch_here(self, down: DownTrack) -> None:
        """Absent -> SWITCHING (joins at this layer's next keyframe)."""
        if down not in self.members and down not in self.switching:
            self.switching = (*self.switching, down)

    def cancel_switch(self, down: DownTrack) -> None:
        if down in self.switching:
            self.switching = tuple(d for d in self.switching if d is not down)

    def take_switching(self) -> tuple[DownTrack, ...]:
        """Every SWITCHING down, now leaving that state (this layer's keyframe came)."""
        switching, self.switching = self.switching, ()
        return switching

    # --- temporal levels (STARTED downs) ------------------------------------------------

    def add_levels(self) -> None:
        if self.levels is None:
            self.levels = [temporal.Level(i) for i in range(temporal.LEVELS)]

    def level(self, index: int) -> temporal.Level | None:
        """The temporal level ``index`` (None: :data:`temporal.ALL`, or no levels)."""
        if self.levels is None or index >= temporal.ALL:
            return None
        return self.levels[index]

    def regroup(self, down: DownTrack, old: int, new: int) -> None:
        """A STARTED down moved from temporal level ``old`` to ``new``."""
        if self.members.get(down) is not Member.STARTED:
            return
        self._array(old).remove(down)
        self._array(new).add(down, down.state)
        self._update_levels_used()

    def set_changing(self, down: DownTrack, changing: bool) -> bool:
        """Mark a STARTED down as changing level (or not); True if that is new."""
        pending = down in self.changing
        if changing and not pending and self.members.get(down) is Member.STARTED:
            self.changing = (*self.changing, down)
        elif not changing and pending:
            self.changing = tuple(d for d in self.changing if d is not down)
        else:
            return False
        self._update_levels_used()
        return changing

    def keep_changing(self, downs: list[DownTrack]) -> None:
        """After the level moves at a picture: these are still to change."""
        self.changing = tuple(d for d in downs if self.members.get(d) is Member.STARTED)
        self._update_levels_used()

    # --- the rest ------------------------------------------------------------------------

    def clear(self) -> None:
        self.members = {}
        self.waiting = ()
        self.started.clear()
        for level in self.levels or ():
            level.clear()
        self.changing = ()
        self.switching = ()
        self.levels_used = False

    def _array(self, level_index: int) -> fastpath.DownList:
        level = self.level(level_index)
        return self.started if level is None else level.downs

    def _leave_arrays(self, down: DownTrack) -> None:
        self.started.remove(down)
        for level in self.levels or ():
            level.downs.remove(down)
        if down in self.changing:
            self.changing = tuple(d for d in self.changing if d is not down)
        self._update_levels_used()

    def _update_levels_used(self) -> None:
        self.levels_used = bool(self.changing) or any(
            level.downs.count for level in self.levels or ()
        )
