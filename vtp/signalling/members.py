"""Who is behind each SFU peer: the user, their room role and how they came in.

The forwarding core (:mod:`vtp.sfu.room`, :mod:`vtp.sfu.peer`) knows peers by id only.
Signalling needs more: which user owns a peer (REST and WHIP calls may only touch their
own connections; room state is readable by the room's members), and which WebSocket
sessions to tell about events in a room. :class:`Members` keeps that, listening to the
SFU's events so that a peer the core removes (left, timed out, room closed) is forgotten
here too.

It also keeps whom the server mutes in each room (:meth:`Members.mute`): a mute is a
user's, so it applies to every peer of theirs in the room, joined before or after it
(:meth:`vtp.sfu.peer.Peer.set_muted` does the withholding), until lifted or until the
room closes. And it tells watchers (:meth:`Members.add_watcher`: attendance) when a
member comes and goes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from vtp.appkeys import SFU_KEY
from vtp.sfu import Peer, Sfu, events
from vtp.signalling.access import RoomRole

logger = logging.getLogger(__name__)

Via = Literal["ws", "rest", "whip", "whep"]


@dataclass(frozen=True, slots=True)
class MemberJoined:
    """Told to the room's sinks when a member is added (the core's PeerJoined event comes
    before the member exists, so it cannot say who the user is)."""

    room: str
    member: Member


Sink = Callable[["events.Event | MemberJoined"], None]
Watcher = Callable[["Member", bool], None]  # (member, True on add / False when forgotten)
MediaKind = Literal["audio", "video"]


@dataclass(frozen=True, slots=True)
class Mute:
    """One kind of a user's media that the server withholds in a room, who muted it, and
    whether the user may lift it themself (``locked``: only a presenter may)."""

    by: str
    locked: bool = False

    def to_json(self) -> dict[str, object]:
        return {"by": self.by, "locked": self.locked}


@dataclass(eq=False)
class Member:
    """One peer of one room and the user behind it."""

    room: str
    peer: Peer
    user_id: uuid.UUID
    display: str
    role: RoomRole
    via: Via
    may_publish: bool = True
    sink: Sink | None = None  # receives every event of the room (WebSocket sessions)
    on_gone: Callable[[str], None] | None = None  # the core removed the peer (reason)
    data: dict[str, str] = field(default_factory=dict)  # per-entry-point bookkeeping

    @property
    def peer_id(self) -> str:
        return self.peer.id

    def to_json(self) -> dict[str, object]:
        return {
            "peer_id": self.peer.id,
            "user_id": str(self.user_id),
            "display": self.display,
            "role": self.role,
            "via": self.via,
        }


class Members:
    def __init__(self, sfu: Sfu) -> None:
        self.sfu = sfu
        self._by_room: dict[str, dict[str, Member]] = {}
        self._mutes: dict[str, dict[uuid.UUID, dict[MediaKind, Mute]]] = {}
        self._watchers: list[Watcher] = []
        self._remove_listener = sfu.add_listener(self._on_event)

    def close(self) -> None:
        self._remove_listener()
        self._by_room.clear()
        self._mutes.clear()

    # --- bookkeeping --------------------------------------------------------------------

    def add(self, member: Member) -> None:
        """Register a member (right after ``room.join``) and announce it to the room."""
        room = self._by_room.setdefault(member.room, {})
        others = list(room.values())
        room[member.peer.id] = member
        mutes = self._mutes.get(member.room, {}).get(member.user_id)
        if mutes:
            member.peer.set_muted(mutes)
        self._deliver(others, MemberJoined(member.room, member))
        self._tell_watchers(member, True)

    def discard(self, member: Member) -> None:
        room = self._by_room.get(member.room)
        if room is not None and room.get(member.peer.id) is member:
            del room[member.peer.id]
            if not room:
                del self._by_room[member.room]
            self._tell_watchers(member, False)

    def add_watcher(self, watcher: Watcher) -> Callable[[], None]:
        """``watcher(member, present)`` is called (synchronously: keep it cheap, don't
        raise) when a member is added and when it is forgotten; returns its remover."""
        self._watchers.append(watcher)
        return lambda: self._watchers.remove(watcher) if watcher in self._watchers else None

    def _tell_watchers(self, member: Member, present: bool) -> None:
        for watcher in list(self._watchers):
            try:
                watcher(member, present)
            except Exception:
                logger.exception("member watcher failed")

    # --- server-side mute -------------------------------------------------------------

    def mute(self, room: str, user_id: uuid.UUID, kind: MediaKind, mute: Mute | None) -> None:
        """Mute (``mute``) or unmute (None) one kind of a user's media in a room: every
        peer of theirs there now, and every one that joins later while it lasts."""
        by_user = self._mutes.setdefault(room, {})
        kinds = by_user.setdefault(user_id, {})
        if mute is None:
            kinds.pop(kind, None)
        else:
            kinds[kind] = mute
        if not kinds:
            del by_user[user_id]
        if not by_user:
            del self._mutes[room]
        for member in self._by_room.get(room, {}).values():
            if member.user_id == user_id:
                member.peer.set_muted(kinds)

    def mutes(self, room: str, user_id: uuid.UUID) -> dict[MediaKind, Mute]:
        """What of the user's media the server withholds in the room."""
        return dict(self._mutes.get(room, {}).get(user_id, {}))

    def get(self, room: str, peer_id: str) -> Member | None:
        return self._by_room.get(room, {}).get(peer_id)

    def in_room(self, room: str) -> list[Member]:
        return list(self._by_room.get(room, {}).values())

    def is_member(self, room: str, user_id: uuid.UUID) -> bool:
        return any(m.user_id == user_id for m in self._by_room.get(room, {}).values())

    def count(self, room: str, user_id: uuid.UUID) -> int:
        return sum(1 for m in self._by_room.get(room, {}).values() if m.user_id == user_id)

    def of_user(self, user_id: uuid.UUID) -> list[Member]:
        """Every peer of this user, in every room (for the caps of vtp.signalling.quotas)."""
        return [m for room in self._by_room.values() for m in room.values() if m.user_id == user_id]

    def find(self, room: str, user_id: uuid.UUID, via: Via) -> Member | None:
        for member in self._by_room.get(room, {}).values():
            if member.user_id == user_id and member.via == via:
                return member
        return None

    # --- events from the SFU ----------------------------------------------------------

    def _on_event(self, event: events.Event) -> None:
        if isinstance(event, events.RoomClosed):
            self._mutes.pop(event.room, None)
        room = self._by_room.get(event.room)
        if not room:
            return
        gone: list[tuple[Member, str]] = []
        if isinstance(event, events.PeerLeft):
            member = room.get(event.peer_id)
            if member is not None and member.peer.left:
                gone.append((member, event.reason))
        elif isinstance(event, events.RoomClosed):
            gone.extend((m, "room closed") for m in room.values())
        self._deliver(list(room.values()), event)
        for member, reason in gone:
            self.discard(member)
            if member.on_gone is not None:
                try:
                    member.on_gone(reason)
                except Exception:
                    logger.exception("on_gone of peer %s failed", member.peer.id)

    @staticmethod
    def _deliver(members: list[Member], event: events.Event | MemberJoined) -> None:
        for member in members:
            if member.sink is not None:
                try:
                    member.sink(event)
                except Exception:
                    logger.exception("SFU event sink of peer %s failed", member.peer.id)


MEMBERS = web.AppKey("sfu_members", Members)


async def members_ctx(app: web.Application) -> AsyncIterator[None]:
    """``app.cleanup_ctx`` entry; must come after :func:`vtp.sfu.sfu_ctx`."""
    members = Members(app[SFU_KEY])
    app[MEMBERS] = members
    try:
        yield
    finally:
        members.close()
