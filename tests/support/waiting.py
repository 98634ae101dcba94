"""Waiting for an outcome by polling it: the one way the tests synchronise with what runs
elsewhere (a server task, a browser, another process), instead of sleeping and hoping."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(
    check: Callable[[], Any | Awaitable[Any]],
    within: float = 10.0,
    what: str = "the condition",
    every: float = 0.05,
) -> Any:
    """Call ``check`` (a plain or an async function) until it returns something truthy,
    and return that. An AssertionError from ``check`` counts as "not yet"; after
    ``within`` seconds, fail with ``what`` and the last value (or assertion) seen."""
    deadline = time.monotonic() + within
    last: Any = None
    while True:
        try:
            last = check()
            if inspect.isawaitable(last):
                last = await last
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {within} s; last: {last!r}")
        await asyncio.sleep(every)
