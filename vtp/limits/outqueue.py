"""An outgoing message queue for one receiver that may read slowly.

State messages carry a key (``("hand", user_id)``): a newer one replaces the queued older
one of the same key and moves to the back, so a slow receiver gets the latest state and
never a backlog of stale ones. Messages without a key (chat, errors, presence) cannot be
merged; at most ``limit`` of them wait, and :meth:`put` says when the receiver has fallen
that far behind (the caller closes it).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class OutQueue(Generic[T]):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[Hashable, T] = OrderedDict()
        self._unkeyed = 0
        self._seq = itertools.count()
        self._ready = asyncio.Event()
        self.coalesced = 0  # state messages replaced before they were sent

    def put(self, item: T, key: Hashable | None = None, *, force: bool = False) -> bool:
        """Queue ``item``; False (and not queued) when ``limit`` unkeyed items wait
        already, unless ``force`` (a last message, such as a close)."""
        if key is None:
            if self._unkeyed >= self.limit and not force:
                return False
            self._unkeyed += 1
            self._items[("#", next(self._seq))] = item
        else:
            slot = ("=", key)
            if self._items.pop(slot, None) is not None:
                self.coalesced += 1
            self._items[slot] = item
        self._ready.set()
        return True

    async def get(self) -> T:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        slot, item = self._items.popitem(last=False)
        if isinstance(slot, tuple) and slot[0] == "#":
            self._unkeyed -= 1
        return item

    def qsize(self) -> int:
        return len(self._items)
