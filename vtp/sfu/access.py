"""Who may do what in an SFU room: the ONE place room-level authorization is decided.

Every way into a room (WebSocket signalling, the REST transports, WHIP, WHEP) calls
:func:`room_access` before it lets a principal join, and the REST room-state endpoint
uses :func:`may_read_room_state`. Today any signed-in user may join any room; teachers and
admins join as presenters, students as viewers (who may still publish: questions asked
with a camera). When rooms are tied to course live sessions, this function is where the
"is this user enrolled in the session's course" check goes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from vtp.auth.principal import Principal

RoomRole = Literal["presenter", "viewer"]

# Room names appear in URLs and logs: keep them to a safe alphabet.
ROOM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class RoomGrant:
    """What a principal may do in one room."""

    role: RoomRole
    may_publish: bool
    may_subscribe: bool = True


def valid_room_name(room: str) -> bool:
    return bool(ROOM_NAME.match(room))


async def room_access(app: web.Application, principal: Principal, room: str) -> RoomGrant | None:
    """The grant ``principal`` has in ``room``, or None if they may not enter it.

    ``app`` is here for the check that will look the room up (course live session,
    enrolment) in the database; nothing else in the SFU decides room access.
    """
    if not valid_room_name(room):
        return None
    if principal.has_role("teacher", "admin"):
        return RoomGrant(role="presenter", may_publish=True)
    return RoomGrant(role="viewer", may_publish=True)


def may_read_room_state(principal: Principal, *, is_member: bool) -> bool:
    """Teachers and admins may inspect any room; others only a room they are in."""
    return is_member or principal.has_role("teacher", "admin")
