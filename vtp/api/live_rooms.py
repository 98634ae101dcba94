"""The one place the domain API touches the SFU: open and close a live session's room.

The SFU of this process is ``app[vtp.appkeys.SFU_KEY]``; without one (an application
built without the media plane, as some tests do) these functions do nothing, so the
REST API works on its own. In a cluster the room is placed first
(:mod:`vtp.signalling.placement`): it opens here only if this node is the one chosen;
elsewhere, its node opens it when the first peer arrives there.
"""

from __future__ import annotations

from aiohttp import web

from vtp.appkeys import SFU_KEY
from vtp.signalling.placement import place_room


async def open_room(app: web.Application, room_name: str) -> None:
    sfu = app.get(SFU_KEY)
    if sfu is None:
        return
    if await place_room(app, room_name) is None:
        sfu.room(room_name)


async def close_room(app: web.Application, room_name: str) -> None:
    """Every peer leaves and the room closes (its subscribers' connections end). On the
    room's node (another one) the peers leave as their right to be there ends
    (:mod:`vtp.signalling.rights`), and the empty room closes after its grace."""
    sfu = app.get(SFU_KEY)
    room = sfu.get_room(room_name) if sfu is not None else None
    if room is not None:
        await room.close()
