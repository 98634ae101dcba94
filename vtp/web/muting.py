"""Server-enforced mute in a live session: the rules of the classroom channel's ``mute``
and ``unmute`` messages (:mod:`vtp.web.live`).

A mute is kept by the SFU's members registry (:meth:`vtp.signalling.members.Members.mute`), so
the SFU withholds the muted kind of media of every peer the user has in the session's
room, whichever way it came in, and of every publication started while the mute lasts:
a modified client that keeps sending is not heard (nor recorded). The rules:

* a presenter mutes anyone's ``audio`` or ``video`` (a "video stop"), optionally
  ``locked``;
* the muted user may unmute themself unless the mute is locked;
* a presenter may unmute anyone (which lifts a lock).

Unmuting only allows the media again: the user's page decides whether to send.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from vtp.signalling.members import MEMBERS, MediaKind, Members, Mute
from vtp.web import live_messages as lm
from vtp.web.class_events import announce

KINDS: tuple[MediaKind, ...] = ("audio", "video")


class MuteRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _members(app: web.Application) -> Members:
    members = app.get(MEMBERS)
    if members is None:
        raise MuteRefused("unavailable", "no SFU runs on this server")
    return members


def state(app: web.Application, room: str, user_id: uuid.UUID) -> dict[str, Any]:
    """``{"audio": {by, locked} | None, "video": ...}`` for the participant list."""
    members = app.get(MEMBERS)
    mutes = members.mutes(room, user_id) if members is not None else {}
    return {kind: (m.to_json() if (m := mutes.get(kind)) else None) for kind in KINDS}


def mute(
    app: web.Application, room: str, user_id: uuid.UUID, kind: MediaKind, *, by: str, locked: bool
) -> lm.Muted:
    """Mute; returns the ``muted`` message for everyone."""
    _members(app).mute(room, user_id, kind, Mute(by=by, locked=locked))
    announce(app, room, "participant.muted", user_id=user_id, kind=kind, by=by, locked=locked)
    return lm.Muted(user_id=str(user_id), kind=kind, by=by, locked=locked)


def unmute(
    app: web.Application,
    room: str,
    user_id: uuid.UUID,
    kind: MediaKind,
    *,
    by: str,
    presenter: bool,
) -> lm.Unmuted:
    """Unmute if the rules allow it; returns the ``unmuted`` message for everyone."""
    members = _members(app)
    current = members.mutes(room, user_id).get(kind)
    if current is None:
        raise MuteRefused("not_muted", f"your {kind} is not muted")
    if current.locked and not presenter:
        raise MuteRefused("mute_locked", f"the teacher locked your {kind}: ask them to unmute")
    members.mute(room, user_id, kind, None)
    announce(app, room, "participant.unmuted", user_id=user_id, kind=kind, by=by)
    return lm.Unmuted(user_id=str(user_id), kind=kind, by=by)
