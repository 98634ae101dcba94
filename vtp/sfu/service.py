"""The SFU service object: every room of this process, and the tick that drives them."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from vtp.config import Config
from vtp.sfu import aiortc_hooks, codecs, events
from vtp.sfu.errors import SfuError
from vtp.sfu.ice import IceSettings
from vtp.sfu.icelite import UdpMux
from vtp.sfu.room import Room
from vtp.sfu.rtp import SUPPORTED_EXTENSIONS
from vtp.sfu.upconnection import UpConnection

logger = logging.getLogger(__name__)

TICK_S = 0.05
SPEAKER_INTERVAL_S = 0.3
REAP_INTERVAL_S = 1.0
MAX_ROOM_NAME = 128


class Sfu:
    """Rooms of peers forwarding RTP. See :mod:`vtp.sfu` for the API overview."""

    def __init__(self, config: Config, settings: IceSettings | None = None) -> None:
        aiortc_hooks.check_versions()
        self.config = config
        self.settings = settings or IceSettings.from_config(config)
        self.room_grace_s = config.room_grace_s
        self.peer_timeout_s = config.peer_timeout_s
        self.bus = events.EventBus()
        self.rooms: dict[str, Room] = {}
        self._task: asyncio.Task[None] | None = None
        self.started = False
        # the shared UDP port, when every connection uses one (opened by start())
        self.mux: UdpMux | None = None
        # counters of connections that have closed (totals() adds the live ones)
        self._retired: collections.Counter[str] = collections.Counter()
        # fire-and-forget work (a peer leaving after its signalling closed), referenced
        # here until done so that it is not garbage-collected half-way
        self._background: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        if self.settings.udp_port is not None and self.mux is None:
            mux = UdpMux(
                self.settings.addresses,
                self.settings.udp_port,
                self.settings.announce_address,
                consent_timeout_s=self.settings.consent_timeout_s,
                tcp=self.settings.tcp,
            )
            await mux.open()
            self.mux = mux
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="vtp-sfu-tick")
            self.started = True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._background:
            await asyncio.wait(list(self._background), timeout=5)
        for room in list(self.rooms.values()):
            await room.close()
        self.rooms.clear()
        if self.mux is not None:
            self.mux.close()
            self.mux = None
        self.started = False

    # --- API ---------------------------------------------------------------------------------

    def add_listener(self, listener: events.Listener) -> Callable[[], None]:
        return self.bus.add(listener)

    def room(self, name: str) -> Room:
        if not isinstance(name, str) or not name or len(name) > MAX_ROOM_NAME:
            raise SfuError("bad-request", "invalid room name")
        room = self.rooms.get(name)
        if room is None or room.closed:
            room = self.rooms[name] = Room(self, name, self.settings)
            room.empty_since = asyncio.get_running_loop().time()
        return room

    def get_room(self, name: str) -> Room | None:
        return self.rooms.get(name)

    def ice_servers(self, user: str) -> list[dict[str, object]]:
        return self.settings.client_ice_servers(user)

    @staticmethod
    def rtp_capabilities() -> dict[str, object]:
        return {
            "codecs": codecs.capabilities(),
            "headerExtensions": [{"uri": uri} for uri in SUPPORTED_EXTENSIONS],
        }

    def stats(self) -> dict[str, object]:
        return {"rooms": [r.stats() for r in self.rooms.values()]}

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        """Run ``work`` in the background; close() waits for what is still running."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def retire(self, counters: dict[str, int]) -> None:
        """A connection closed: keep its counters in the process totals."""
        self._retired.update(counters)

    def totals(self) -> dict[str, int]:
        """Monotonic process-wide counters (packets, bytes, NACKs, ...) plus the current
        number of rooms, peers, publications and subscriptions; read at scrape time, so
        the packet path pays nothing for them."""
        totals: collections.Counter[str] = collections.Counter(self._retired)
        rooms = peers = publications = subscriptions = 0
        for room in self.rooms.values():
            rooms += 1
            for peer in room.peers.values():
                peers += 1
                for conn in peer.connections.values():
                    totals.update(conn.counters())
                    if isinstance(conn, UpConnection):
                        publications += 1
                    else:
                        subscriptions += 1
        totals["rooms"] = rooms
        totals["peers"] = peers
        totals["publications"] = publications
        totals["subscriptions"] = subscriptions
        totals["ice_lite_dropped"] = self.mux.dropped if self.mux is not None else 0
        return dict(totals)

    # --- periodic work ------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_speaker = last_reap = loop.time()
        while True:
            await asyncio.sleep(TICK_S)
            try:
                now = time.monotonic()
                for room in list(self.rooms.values()):
                    room.tick(now)
                lnow = loop.time()
                if lnow - last_speaker >= SPEAKER_INTERVAL_S:
                    last_speaker = lnow
                    for room in list(self.rooms.values()):
                        try:
                            room.speaker_tick()
                        except Exception:
                            logger.exception("speaker detection failed in room %s", room.name)
                if lnow - last_reap >= REAP_INTERVAL_S:
                    last_reap = lnow
                    await self._reap(now, lnow)
            except Exception:  # the tick must survive anything one room does
                logger.exception("SFU tick failed")

    async def _reap(self, now: float, lnow: float) -> None:
        for name, room in list(self.rooms.items()):
            try:
                # silence is noticed up to one reap late and acted on up to one reap
                # later: a vanished peer is gone within peer_timeout_s
                await room.reap(now, max(1.0, self.peer_timeout_s - 2 * REAP_INTERVAL_S))
            except Exception:
                logger.exception("reaping room %s failed", name)
            if (
                not room.peers
                and room.empty_since is not None
                and (lnow - room.empty_since >= self.room_grace_s)
            ):
                if self.rooms.get(name) is room:
                    del self.rooms[name]
                await room.close()
