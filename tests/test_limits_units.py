"""The building blocks of the per-user limits, on a fake clock: token buckets and the
coalescing outgoing queue."""

from __future__ import annotations

import uuid

from vtp.limits.outqueue import OutQueue
from vtp.limits.tokenbucket import SendLimits, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=5, clock=clock)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    clock.now = 1.0  # two tokens back
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.now = 100.0  # never more than the burst
    assert sum(bucket.take() for _ in range(10)) == 5


def test_a_users_sockets_share_twice_the_rate_of_one() -> None:
    clock = Clock()
    limits = SendLimits(rate=1.0, burst=3, clock=clock)
    user, other = uuid.uuid4(), uuid.uuid4()
    a, b, c = (limits.for_connection(user) for _ in range(3))
    assert [a.allow() for _ in range(4)] == [True, True, True, False]  # a's own burst
    assert [b.allow() for _ in range(3)] == [True, True, False]  # the user's 6 spent
    assert not c.allow()
    assert limits.for_connection(other).allow()  # someone else is not affected


def test_full_user_buckets_are_forgotten() -> None:
    clock = Clock()
    limits = SendLimits(rate=1.0, burst=1, clock=clock)
    for _ in range(200):
        limits.for_connection(uuid.uuid4()).allow()
    assert len(limits.users) == 200  # all spent: all kept
    clock.now = 10.0  # every bucket refilled: as good as new, so dropped at the next prune
    for _ in range(100):
        limits.users.get(uuid.uuid4())
    assert len(limits.users) < 100


async def test_state_messages_coalesce_and_others_are_bounded() -> None:
    queue: OutQueue[str] = OutQueue(limit=3)
    assert queue.put("hand ada up", key=("hand", "ada"))
    assert queue.put("chat 1")
    assert queue.put("hand ada down", key=("hand", "ada"))  # replaces, moves to the back
    assert queue.put("media ben", key=("media", "ben"))
    assert queue.put("chat 2") and queue.put("chat 3")
    assert not queue.put("chat 4")  # three unkeyed wait already
    assert queue.put("state", key=("hand", "ben"))  # state still fits: it replaces
    assert queue.put("close", force=True)
    got = [await queue.get() for _ in range(queue.qsize())]
    assert got == ["chat 1", "hand ada down", "media ben", "chat 2", "chat 3", "state", "close"]
    assert queue.coalesced == 1
    assert queue.put("chat 5")  # read: room again
