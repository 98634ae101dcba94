"""Draining a node: what `vtp serve` does on SIGTERM before it exits.

1. The node is marked draining in the registry (:meth:`NodeRegistry.drain`): from that
   moment placement gives it no new room, on every node; it stays in the registry, so
   the rooms it holds stay placed here.
2. It waits until its rooms have closed (their classes ended and their peers left) or
   ``VTP_DRAIN_TIMEOUT_S`` has passed (a second SIGTERM ends the wait at once).
3. Each room still open here is given up: recordings in it are stopped, its placement is
   released and the room placed again (on a node that takes rooms), and its clients are
   sent there - signalling sockets get ``reconnect`` with the new node's URL and close
   with 1012, classroom live channels get ``room_elsewhere`` and close with 4307.
4. Recordings are finished and their uploads waited for (``FINISH_UPLOADS_S`` at most;
   what is not uploaded by then stays in the spool for the next start).
5. The process exits as on any stop (sockets closed, the node leaves the registry) with
   status 0.

SIGINT (Ctrl-C) still stops at once, without draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator

from aiohttp import web

from vtp.appkeys import CONFIG, NODES, PLACEMENT, RECORDER, SFU_KEY
from vtp.cluster.placement import NoLiveNode
from vtp.sfu import events
from vtp.signalling.websocket import send_room_elsewhere
from vtp.web.live import send_class_elsewhere

log = logging.getLogger(__name__)

FINISH_UPLOADS_S = 300.0  # after the drain: how long the uploads of recordings may take
REASON = "node draining"


class Drain:
    """One node's drain (at most one per process)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.task: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()  # a second SIGTERM: stop waiting for the rooms
        self._room_closed = asyncio.Event()

    def request(self) -> None:
        """SIGTERM: start draining (the first time), stop waiting (the second)."""
        if self.task is None:
            self.task = asyncio.create_task(self._drain_then_exit(), name="vtp-drain")
        else:
            log.warning("SIGTERM again: not waiting for the rooms any longer")
            self.hurry()

    def hurry(self) -> None:
        """Stop waiting for the rooms to close: send their clients elsewhere now."""
        self._hurry.set()

    async def _drain_then_exit(self) -> None:
        try:
            await self.run()
        except Exception:
            log.exception("draining failed; stopping anyway")
        # the same way out as aiohttp's own signal handlers (run_app returns)
        asyncio.get_running_loop().call_soon(_exit)

    async def run(self) -> None:
        """Steps 1-4 (the caller exits)."""
        app = self.app
        started = time.monotonic()
        registry = app.get(NODES)
        if registry is not None:
            try:
                await registry.drain()
            except Exception:  # Redis away: the entry expires once the node has gone
                log.exception("marking the node draining failed")
        await self._rooms_closed(app[CONFIG].drain_timeout_s)
        recorder = app.get(RECORDER)
        moved = await self._give_rooms_up()
        if recorder is not None:
            done = await recorder.finish(FINISH_UPLOADS_S)
            if not done:
                log.warning(
                    "draining: recording uploads not finished; they resume from %s at the "
                    "next start",
                    recorder.spool.root,
                )
        log.info("drained in %.1f s (%d room(s) moved)", time.monotonic() - started, moved)

    async def _rooms_closed(self, timeout_s: float) -> None:
        sfu = self.app.get(SFU_KEY)
        if sfu is None:
            return

        def on_event(event: events.Event) -> None:
            if isinstance(event, events.RoomClosed):
                self._room_closed.set()

        unlisten = sfu.add_listener(on_event)
        deadline = time.monotonic() + timeout_s
        try:
            while sfu.rooms and not self._hurry.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                log.info("draining: waiting for %d room(s) to close", len(sfu.rooms))
                self._room_closed.clear()
                hurry = asyncio.ensure_future(self._hurry.wait())
                closed = asyncio.ensure_future(self._room_closed.wait())
                try:
                    await asyncio.wait({hurry, closed}, timeout=left, return_when="FIRST_COMPLETED")
                finally:
                    hurry.cancel()
                    closed.cancel()
        finally:
            unlisten()

    async def _give_rooms_up(self) -> int:
        """Send the clients of every room still open here to the room's next node."""
        app = self.app
        sfu = app.get(SFU_KEY)
        if sfu is None or not sfu.rooms:
            return 0
        recorder = app.get(RECORDER)
        if recorder is not None:
            # (stopped before the clients leave: the recording ends with the class here)
            await recorder.stop_all()
        placement = app.get(PLACEMENT)
        cluster = app[CONFIG].cluster and placement is not None
        names = list(sfu.rooms)
        for name in names:
            node = None
            if cluster:
                assert placement is not None
                try:
                    await placement.release(name)
                    node = await placement.place(name, region=app[CONFIG].region or None)
                except NoLiveNode:
                    node = None
                except Exception:
                    log.exception("draining: placing room %s again failed", name)
                    node = None
            told = await send_room_elsewhere(app, name, node.url if node else None, REASON)
            told += send_class_elsewhere(app, name, node)
            log.info(
                "draining: room %s moved to %s (%d client socket(s) told)",
                name,
                node.id if node else "no node yet",
                told,
            )
        return len(names)


def _exit() -> None:
    raise web.GracefulExit()


DRAIN = web.AppKey("drain", Drain)


async def _on_sigterm_ctx(app: web.Application) -> AsyncIterator[None]:
    drain = app[DRAIN] = Drain(app)
    loop = asyncio.get_running_loop()
    # (replaces aiohttp's own SIGTERM handler, installed before the app starts)
    loop.add_signal_handler(signal.SIGTERM, drain.request)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(signal.SIGTERM)
        if drain.task is not None and not drain.task.done():
            drain.task.cancel()


def drain_on_sigterm(app: web.Application) -> None:
    """`vtp serve`: SIGTERM drains the node, then it exits (tests' apps do not)."""
    app.cleanup_ctx.append(_on_sigterm_ctx)
