"""The one place the domain API touches the SFU: open and close a live session's room.

The SFU of this process is ``app[vtp.appkeys.SFU_KEY]``; without one (an application
built without the media plane, as some tests do) these functions do nothing, so the
REST API works on its own.
"""

from __future__ import annotations

from aiohttp import web

from vtp.appkeys import SFU_KEY


async def open_room(app: web.Application, room_name: str) -> None:
    sfu = app.get(SFU_KEY)
    if sfu is not None:
        sfu.room(room_name)


async def close_room(app: web.Application, room_name: str) -> None:
    """Every peer leaves and the room closes (its subscribers' connections end)."""
    sfu = app.get(SFU_KEY)
    room = sfu.get_room(room_name) if sfu is not None else None
    if room is not None:
        await room.close()
