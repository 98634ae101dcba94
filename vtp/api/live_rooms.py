"""The one place the domain API touches the SFU: open and close a live session's room.

The SFU (vtp.sfu) lives in the same process under ``app[vtp.sfu.SFU_KEY]``. When it is
absent (not set up, or not importable) these functions do nothing, so the REST API
works on its own. What they call:

* open:  ``sfu.room(room_name)``  (get or create the room);
* close: ``sfu.get_room(room_name)``, then ``await room.close()`` if the room has a
  ``close`` method, otherwise ``await peer.leave()`` for every peer in ``room.peers``
  (an empty room is closed by the SFU after its grace period).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


def sfu_of(app: web.Application) -> Any | None:
    try:
        module = importlib.import_module("vtp.sfu")
    except ImportError:
        return None
    key = getattr(module, "SFU_KEY", None)
    if key is None:
        return None
    try:
        return app.get(key)
    except TypeError:
        return None


def open_room_in(sfu: Any | None, room_name: str) -> None:
    if sfu is not None:
        sfu.room(room_name)


async def close_room_in(sfu: Any | None, room_name: str) -> None:
    if sfu is None:
        return
    room = sfu.get_room(room_name)
    if room is None:
        return
    close = getattr(room, "close", None)
    if callable(close):
        result = close()
        if inspect.isawaitable(result):
            await result
        return
    for peer in list(room.peers.values()):
        try:
            await peer.leave()
        except Exception:  # one stuck peer must not keep the others in the room
            log.exception("peer %s did not leave room %s", getattr(peer, "id", "?"), room_name)


async def open_room(app: web.Application, room_name: str) -> None:
    open_room_in(sfu_of(app), room_name)


async def close_room(app: web.Application, room_name: str) -> None:
    await close_room_in(sfu_of(app), room_name)
