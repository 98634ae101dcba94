"""Changes of authority, announced to every live socket of every process on Redis pub/sub.

A right that a WebSocket or a media session was given when it opened (a valid token, a
course membership, a role, the right to publish) can be taken away while it stays open:
logout, a revoked refresh family, a site or course role change, unenrolment, removal by
the teacher, the session's end, ``students_may_publish`` turned off. Whoever takes a
right away :meth:`AuthorityBus.publish`-es an :class:`AuthorityChange`; every process
sharing the Redis receives it, and each open socket or peer of the user it names (or of
the course/session it names) re-evaluates its right at once and closes or is downgraded.
Nothing is polled: a socket costs nothing until a change concerns it.

Pub/sub is at-most-once (a change published while a process is reconnecting to Redis is
lost to it); the access token's expiry bounds that gap: a long socket must renew its token
(which checks revocation) before it expires, or it is closed (:func:`until_expired`).

The changes travel on a cluster topic (:mod:`vtp.cluster.topic`: one listener,
reconnects, a process not hearing its own). The bus delivers its own changes in-process
at once (not through Redis), so a change made
here takes effect here even while Redis pub/sub is down. With the embedded fakeredis it
is the in-process bus of one process, as it should be.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from vtp.cluster.topic import Topic

logger = logging.getLogger(__name__)

Scope = tuple[uuid.UUID | None, uuid.UUID | None]  # (course_id, session_id) of a socket


@dataclass(frozen=True, slots=True)
class AuthorityChange:
    """Some right may have been taken away.

    ``user_id`` set: that user's sockets re-check (``course_id``/``session_id`` then only
    say where it happened). ``user_id`` None: every socket in that session (or course)
    re-checks: the session ended, its publish right changed."""

    reason: str
    user_id: uuid.UUID | None = None
    course_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    by: str | None = None  # who made the change (a display name), when it is worth saying

    def concerns(self, user_id: uuid.UUID, scope: Scope) -> bool:
        if self.user_id is not None:
            return self.user_id == user_id
        course_id, session_id = scope
        if self.session_id is not None:
            return self.session_id == session_id
        if self.course_id is not None:
            return self.course_id == course_id
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "user_id": _str(self.user_id),
            "course_id": _str(self.course_id),
            "session_id": _str(self.session_id),
            "by": self.by,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuthorityChange:
        return cls(
            reason=str(data.get("reason") or "authority changed")[:200],
            user_id=_uuid(data.get("user_id")),
            course_id=_uuid(data.get("course_id")),
            session_id=_uuid(data.get("session_id")),
            by=None if data.get("by") is None else str(data["by"])[:200],
        )


def _str(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _uuid(value: Any) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(str(value))


Recheck = Callable[[AuthorityChange], Awaitable[None]]


class Watch:
    """One socket's registration: its user, where it is, and how it re-checks itself.

    Re-checks of one socket never overlap: changes arriving during one are coalesced into
    a single further re-check (with the latest change)."""

    def __init__(
        self,
        bus: AuthorityBus,
        user_id: uuid.UUID,
        recheck: Recheck,
        scope: Callable[[], Scope] | None,
    ) -> None:
        self.bus = bus
        self.user_id = user_id
        self.recheck = recheck
        self.scope = scope or (lambda: (None, None))
        self.task: asyncio.Task[None] | None = None
        self._again: AuthorityChange | None = None
        self.cancelled = False

    def poke(self, change: AuthorityChange) -> None:
        if self.cancelled:
            return
        if self.task is not None and not self.task.done():
            self._again = change
            return
        self.task = asyncio.create_task(self._run(change), name="vtp-authority-recheck")

    async def _run(self, change: AuthorityChange | None) -> None:
        while change is not None and not self.cancelled:
            try:
                await self.recheck(change)
            except Exception:
                logger.exception("authority re-check failed (%s)", change.reason)
            change, self._again = self._again, None

    def cancel(self) -> None:
        """Stop watching (the socket closed). A re-check already running finishes."""
        self.cancelled = True
        self.bus._watches.discard(self)


class AuthorityBus:
    """Publishes :class:`AuthorityChange` on a cluster :class:`~vtp.cluster.topic.Topic`
    and hands the ones it receives to the registered :class:`Watch`-es of this process."""

    def __init__(self, redis: Redis) -> None:
        self._topic = Topic(redis, "authority", self._received)
        self._watches: set[Watch] = set()

    @property
    def channel(self) -> str:
        return self._topic.channel

    # --- lifetime ------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe, and wait for the first attempt, so that no change published after the
        app serves is missed. With Redis down the app still starts (``/ready`` says why);
        the topic keeps trying in the background."""
        await self._topic.start()

    async def close(self) -> None:
        await self._topic.close()
        tasks = [w.task for w in self._watches if w.task is not None and not w.task.done()]
        for watch in list(self._watches):
            watch.cancel()
        # Re-checks still running would outlive the database pool and sockets they use.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _received(self, data: dict[str, Any]) -> None:
        try:
            change = AuthorityChange.from_json(data)
        except (ValueError, TypeError, AttributeError):
            logger.warning("ignored a malformed authority change")
            return
        self.deliver(change)

    # --- use -----------------------------------------------------------------------------

    def watch(
        self,
        user_id: uuid.UUID,
        recheck: Recheck,
        scope: Callable[[], Scope] | None = None,
    ) -> Watch:
        """Call ``recheck(change)`` for every change that concerns ``user_id`` (or the
        course/session ``scope()`` returns). Cancel the watch when the socket closes."""
        watch = Watch(self, user_id, recheck, scope)
        self._watches.add(watch)
        return watch

    def deliver(self, change: AuthorityChange) -> None:
        """Hand a change to this process's watches."""
        for watch in list(self._watches):
            if change.concerns(watch.user_id, watch.scope()):
                watch.poke(change)

    async def publish(self, change: AuthorityChange) -> None:
        """Tell every process (this one at once). Call it after the change is stored."""
        self.deliver(change)
        # A Redis failure is logged, not raised: the change is stored, and other
        # processes' sockets still lose the right at their next re-check or token renewal.
        await self._topic.publish(change.to_json())

    @property
    def watching(self) -> int:
        return len(self._watches)


async def until_expired(expires_at: Callable[[], float]) -> None:
    """Return once the time ``expires_at()`` names has passed; it is read again after
    each wait, so a renewed token moves the deadline."""
    while True:
        delay = expires_at() - time.time()
        if delay <= 0:
            return
        await asyncio.sleep(delay)
