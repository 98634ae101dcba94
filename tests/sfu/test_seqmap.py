"""The forwarded numbering (pseq -> fseq) of vtp.sfu.seqmap.SeqMap."""

from __future__ import annotations

import bisect
import random

from vtp.sfu.seqmap import SeqMap


def test_without_drops_the_numbers_are_the_publishers() -> None:
    m = SeqMap()
    assert [m.forward(p) for p in (5, 6, 8, 7, 9)] == [5, 6, 8, 7, 9]
    assert m.highest_forwarded == 9
    assert m.fseq(12) == 12 and m.pseq(12) == 12


def test_a_dropped_number_leaves_no_hole() -> None:
    m = SeqMap()
    assert m.forward(100) == 100
    assert m.drop(101, newest=101)
    assert m.forward(102) == 101
    assert m.fseq(101) is None  # dropped: it has no forwarded number
    assert m.fseq(102) == 101
    assert [m.pseq(f) for f in (100, 101)] == [100, 102]


def test_a_number_given_out_stays_put() -> None:
    m = SeqMap()
    m.forward(10)
    m.forward(12)  # 11 late
    assert not m.drop(11, newest=12)  # below the highest forwarded: too late
    assert m.fseq(11) == 11 and m.forward(13) == 13


def test_drops_out_of_order_insert() -> None:
    m = SeqMap()
    m.forward(105)
    assert m.drop(112, newest=112)
    assert m.drop(110, newest=112)
    assert m.forward(111) == 110
    assert m.forward(113) == 111
    assert [m.pseq(f) for f in (109, 110, 111)] == [109, 111, 113]


def test_never_coming_drops_only_what_was_not_given_out() -> None:
    m = SeqMap()
    m.forward(20)
    m.forward(23)  # 21, 22 missing; then the numbering jumps
    m.never_coming([21, 22, 24, 25])
    assert m.fseq(21) == 21  # given out already (23 was forwarded after it)
    assert m.fseq(24) is None and m.fseq(25) is None
    assert m.forward(26) == 24


def test_old_drops_fold_into_the_base() -> None:
    m = SeqMap(window=10)
    m.forward(0)
    for p in range(1, 40, 2):  # every odd number dropped, every even one forwarded
        assert m.drop(p, newest=p)
        assert m.forward(p + 1) == (p + 1) // 2
    assert len(m._dropped) <= 6  # (at most the window's worth is kept)
    assert m.forward(41) == 21 and m.pseq(21) == 41


def test_matches_a_model_that_remembers_every_drop() -> None:
    """A random stream of forwarded, dropped, late and reordered numbers: every fseq the
    map gives equals the publisher's number less the drops before it, and maps back."""
    rng = random.Random(1616)
    m = SeqMap(window=300)
    dropped: list[int] = []  # the model: all drops, sorted
    highest_forwarded = -1
    newest = -1
    given: dict[int, int] = {}  # fseq -> pseq
    pseq = 1000
    for _ in range(20000):
        pseq += rng.choice((1, 1, 1, 1, 2, 3))
        late = pseq - rng.randint(1, 50) if rng.random() < 0.1 else None
        for p in (pseq, late):
            if p is None or p in given.values() or p in dropped:
                continue
            newest = max(newest, p)
            if rng.random() < 0.2:
                ok = m.drop(p, newest)
                assert ok == (p > highest_forwarded)
                if ok:
                    bisect.insort(dropped, p)
                continue
            expected = p - bisect.bisect_left(dropped, p)
            fseq = m.forward(p)
            assert fseq == expected
            assert fseq not in given  # no number given out twice
            given[fseq] = p
            highest_forwarded = max(highest_forwarded, p)
    recent = [f for f, p in given.items() if p > newest - 300]
    assert recent
    for f in recent:
        assert m.pseq(f) == given[f]
        assert m.fseq(given[f]) == f
