"""vtp.sfu.fanout: every down track in one state per layer, and the containers the packet
path reads (members, waiting, the C arrays, switching, changing, levels_used) agreeing
with those states after each transition."""

from __future__ import annotations

from typing import Any

from vtp.sfu import fastpath, temporal
from vtp.sfu.fanout import Fanout, Member


class FakeDown:
    def __init__(self, ssrc: int) -> None:
        self.state = fastpath.new_down(ssrc, 96, 0, "", 0, 0)
        self.temporal = temporal.ALL


def check(fanout: Fanout) -> None:
    """The containers say exactly what the states say."""
    started = {d for d, m in fanout.members.items() if m is Member.STARTED}
    waiting = {d for d, m in fanout.members.items() if m is Member.WAITING}
    assert set(fanout.waiting) == waiting and len(fanout.waiting) == len(waiting)
    in_arrays: list[Any] = list(fanout.started.owners[: fanout.started.count])
    for level in fanout.levels or ():
        in_arrays += level.downs.owners[: level.downs.count]
    assert sorted(map(id, in_arrays)) == sorted(map(id, started))  # each in one array
    assert set(fanout.changing) <= started
    assert not set(fanout.switching) & set(fanout.members)
    assert fanout.levels_used == (
        bool(fanout.changing) or any(level.downs.count for level in fanout.levels or ())
    )


def test_transitions_keep_the_containers_in_step() -> None:
    fanout = Fanout()
    a: Any = FakeDown(1)
    b: Any = FakeDown(2)
    c: Any = FakeDown(3)
    fanout.attach(a, started=False)
    fanout.attach(b, started=True)
    fanout.switch_here(c)
    check(fanout)
    assert [fanout.state(d) for d in (a, b, c)] == [
        Member.WAITING,
        Member.STARTED,
        Member.SWITCHING,
    ]
    assert fanout.started.count == 1 and fanout.waiting == (a,)

    fanout.start(a)
    fanout.start(a)  # twice: still one entry
    check(fanout)
    assert fanout.started.count == 2 and fanout.waiting == ()

    # temporal levels appear; b moves to level 1 and then is marked changing
    fanout.add_levels()
    b.temporal = 1
    fanout.regroup(b, temporal.ALL, 1)
    check(fanout)
    assert fanout.levels_used and fanout.started.count == 1
    assert fanout.set_changing(a, True)
    assert not fanout.set_changing(a, True)
    check(fanout)

    # a restart: out of the arrays (and of changing), waiting again
    fanout.stop(a)
    check(fanout)
    assert fanout.state(a) is Member.WAITING and fanout.changing == ()

    # the switch completes: c taken out of switching, joins started
    assert fanout.take_switching() == (c,)
    fanout.attach(c, started=True)
    check(fanout)

    for down in (a, b, c):
        fanout.detach(down)
        check(fanout)
    assert fanout.members == {} and not fanout.levels_used

    # a changing mark needs a started down
    assert not fanout.set_changing(a, True)
    fanout.attach(a, started=True)
    fanout.switch_here(a)  # a member is not switching to its own layer
    check(fanout)
    fanout.clear()
    check(fanout)
    assert fanout.members == {} and fanout.started.count == 0
