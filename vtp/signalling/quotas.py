"""Caps per user over the SFU of this process, so that one account cannot load a class:
rooms a user is in at once, peer connections (publications and subscriptions) over all
their rooms, and WHIP publications. Each check counts what :class:`~vtp.signalling.members.
Members` holds and is called with no await between it and the registration it guards
(``room.join`` / ``peer.publish`` / ``peer.subscribe`` register synchronously), so
concurrent requests cannot slip past it. Refusals are 429 errors (a signalling socket
gets them as ``error`` messages).

A class's room lives in one process, so these caps are per process; open WebSockets per
user are capped across processes (:mod:`vtp.limits.leases`).
"""

from __future__ import annotations

import uuid

from aiohttp import web

from vtp.api.errors import ApiError
from vtp.appkeys import CONFIG
from vtp.signalling.members import MEMBERS


def check_room(app: web.Application, user_id: uuid.UUID, room_name: str) -> None:
    """May this user enter one more room (``room_name``, unless already in it)?"""
    limit = app[CONFIG].max_rooms_per_user
    rooms = {m.room for m in app[MEMBERS].of_user(user_id)}
    if room_name not in rooms and len(rooms) >= limit:
        raise ApiError(
            429,
            "too_many_rooms",
            f"you are in {len(rooms)} rooms already (at most {limit} at once)",
            {"limit": limit},
        )


def check_connection(app: web.Application, user_id: uuid.UUID) -> None:
    """May this user open one more peer connection (publish or subscribe)?"""
    limit = app[CONFIG].max_peer_connections_per_user
    count = sum(len(m.peer.connections) for m in app[MEMBERS].of_user(user_id))
    if count >= limit:
        raise ApiError(
            429,
            "too_many_connections",
            f"you have {count} peer connections open (at most {limit} over all rooms)",
            {"limit": limit},
        )


def check_whip(app: web.Application, user_id: uuid.UUID) -> None:
    """May this user start one more WHIP publication?"""
    limit = app[CONFIG].max_whip_per_user
    count = sum(1 for m in app[MEMBERS].of_user(user_id) if m.via == "whip")
    if count >= limit:
        raise ApiError(
            429,
            "too_many_publications",
            f"you have {count} WHIP publications (at most {limit} at once)",
            {"limit": limit},
        )
