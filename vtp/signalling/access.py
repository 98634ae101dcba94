"""Who may do what in an SFU room: the ONE place room-level authorization is decided.

Every way into a room (WebSocket signalling, the REST transports, WHIP, WHEP) calls
:func:`room_access` before it lets a principal join, and the REST room-state endpoint
uses :func:`may_read_room_state`.

* A room that is a course live session's (``live_sessions.room_name``) admits only the
  members of that course (and admins), only while the session is live, with the role
  and publish right of their join ticket (:func:`vtp.db.sessions.join_ticket`: teachers,
  TAs and admins present; students publish when the session lets them; observers
  watch). A user the teacher removed from the session stays out until it ends. The grant
  is asked again whenever authority changes (:mod:`vtp.signalling.rights`) and when a
  publication starts, so what it says holds for as long as the peer is in the room.
* Any other room is an open room (WHIP ingest, ad-hoc meetings), and exists only if an
  operator turns ``VTP_SFU_OPEN_ROOMS`` on (it is off by default: only course sessions
  are rooms); then any signed-in user may enter, teachers and admins as presenters,
  students as viewers who may publish.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from vtp.appkeys import CONFIG, DB, REDIS
from vtp.auth import removals
from vtp.auth.principal import Principal
from vtp.db import sessions

RoomRole = Literal["presenter", "viewer"]

# Room names appear in URLs and logs: keep them to a safe alphabet.
ROOM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class RoomGrant:
    """What a principal may do in one room."""

    role: RoomRole
    may_publish: bool
    may_subscribe: bool = True
    # where the grant holds (None: an open room), to route changes of authority; not a
    # right, so not compared
    course_id: uuid.UUID | None = field(default=None, compare=False)
    session_id: uuid.UUID | None = field(default=None, compare=False)


def valid_room_name(room: str) -> bool:
    return bool(ROOM_NAME.match(room))


async def room_access(app: web.Application, principal: Principal, room: str) -> RoomGrant | None:
    """The grant ``principal`` has in ``room``, or None if they may not enter it."""
    if not valid_room_name(room):
        return None
    pool = app[DB]
    ticket = await sessions.join_ticket(
        pool, user_id=principal.user_id, is_admin=principal.has_role("admin"), room_name=room
    )
    if ticket is not None:
        if ticket.status != "live" or await _removed_by_teacher(app, ticket.session_id, principal):
            return None
        return RoomGrant(
            role=ticket.role,
            may_publish=ticket.may_publish,
            course_id=ticket.course_id,
            session_id=ticket.session_id,
        )
    if await sessions.room_is_session(pool, room):
        return None  # a course's session, and this user is not in that course
    if not app[CONFIG].sfu_open_rooms:
        return None
    if principal.has_role("teacher", "admin"):
        return RoomGrant(role="presenter", may_publish=True)
    return RoomGrant(role="viewer", may_publish=True)


async def _removed_by_teacher(
    app: web.Application, session_id: uuid.UUID, principal: Principal
) -> bool:
    # The classroom keeps whom the teacher removed from a session (in Redis); their client
    # must not walk back into the room by itself.
    return await removals.reason(app[REDIS], session_id, principal.user_id) is not None


async def may_read_room_state(
    app: web.Application, principal: Principal, room: str, *, is_member: bool
) -> bool:
    """A room's state (who is in it, what they publish) is for the room's members, the
    teachers and TAs of the course whose session it is, and admins; not for every site
    teacher."""
    if is_member or principal.has_role("admin"):
        return True
    ticket = await sessions.join_ticket(
        app[DB], user_id=principal.user_id, is_admin=False, room_name=room
    )
    return ticket is not None and ticket.course_role in ("teacher", "ta")
