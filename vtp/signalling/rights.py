"""An SFU member's rights follow every change of authority, not only the one at join.

A member (an SFU peer and the user behind it) entered its room with the grant of
:func:`vtp.signalling.access.room_access`. When authority changes (:mod:`vtp.auth.authority`:
logout, unenrolment, role change, removal, session end, ``students_may_publish`` off),
the grant is asked again and what it no longer allows stops:

* refused (or the token revoked): the peer leaves the room, so its publications and
  subscriptions close;
* no longer allowed to publish: its publications close and it stays a viewer (a WHIP
  session, which only publishes, ends);
* another room role: the member's role follows.

The WebSocket signalling session re-checks its own member (it also tells its client and
closes its socket: :mod:`vtp.signalling.websocket`); :func:`watch_http_member` does it for the
peers created over HTTP (REST transports, WHIP, WHEP). Those cannot renew their access
token, so they outlive its expiry but not its revocation.
"""

from __future__ import annotations

import logging

from aiohttp import web

from vtp.appkeys import AUTHORITY, TOKENS
from vtp.auth.authority import AuthorityChange
from vtp.auth.principal import Principal
from vtp.auth.tokens import TokenError
from vtp.sfu import UpConnection
from vtp.signalling.access import RoomGrant, room_access
from vtp.signalling.members import Member

logger = logging.getLogger(__name__)


async def close_publications(member: Member, reason: str) -> None:
    for conn in list(member.peer.connections.values()):
        if isinstance(conn, UpConnection):
            await conn.close(reason)


async def apply_grant(member: Member, grant: RoomGrant, reason: str) -> bool:
    """Make the member hold ``grant``; True if its role or publish right changed."""
    changed = (member.role, member.may_publish) != (grant.role, grant.may_publish)
    member.role = grant.role
    member.may_publish = grant.may_publish
    if not grant.may_publish:
        await close_publications(member, f"may not publish: {reason}")
    return changed


async def regrant(
    app: web.Application, member: Member, principal: Principal, reason: str
) -> RoomGrant | None:
    """Ask for the member's grant again and apply it; None: refused, the peer has left."""
    grant = await room_access(app, principal, member.room)
    if member.peer.left:
        return None
    if grant is None:
        await leave(member, f"access revoked: {reason}")
        return None
    await apply_grant(member, grant, reason)
    return grant


async def leave(member: Member, reason: str) -> None:
    if not member.peer.left:
        try:
            await member.peer.leave(reason)
        except Exception:
            logger.exception("peer %s failed to leave", member.peer.id)


def watch_http_member(app: web.Application, member: Member, token: str, grant: RoomGrant) -> None:
    """Re-check a REST, WHIP or WHEP member whenever authority changes, until it leaves.
    ``member.data["token"]`` is the token re-checked (REST requests refresh it)."""
    bus = app.get(AUTHORITY)
    if bus is None:
        return
    member.data["token"] = token

    async def recheck(change: AuthorityChange) -> None:
        if member.peer.left:
            return
        try:
            principal = await app[TOKENS].verify_unrevoked(member.data["token"])
        except TokenError as exc:
            await leave(member, f"{exc.code}: {change.reason}")
            return
        new = await regrant(app, member, principal, change.reason)
        if new is not None and member.via == "whip" and not new.may_publish:
            await leave(member, f"may not publish: {change.reason}")

    watch = bus.watch(member.user_id, recheck, lambda: (grant.course_id, grant.session_id))
    previous = member.on_gone

    def gone(reason: str) -> None:
        watch.cancel()
        if previous is not None:
            previous(reason)

    member.on_gone = gone
    if member.peer.left:  # it left before the watch was in place
        watch.cancel()
