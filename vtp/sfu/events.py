"""Events the SFU emits for the signalling layer (room membership, tracks, speakers)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PeerJoined:
    room: str
    peer_id: str
    display: str


@dataclass(frozen=True, slots=True)
class PeerLeft:
    room: str
    peer_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class StreamAdded:
    """A publication's connection is up and its tracks can be subscribed to."""

    room: str
    peer_id: str
    stream_id: str
    label: str
    kinds: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StreamRemoved:
    room: str
    peer_id: str
    stream_id: str


@dataclass(frozen=True, slots=True)
class TrackAdded:
    room: str
    peer_id: str
    stream_id: str
    track_id: str
    kind: str


@dataclass(frozen=True, slots=True)
class TrackRemoved:
    room: str
    peer_id: str
    stream_id: str
    track_id: str
    kind: str


@dataclass(frozen=True, slots=True)
class SubscriptionClosed:
    """A subscriber's down connection ended (its stream went away, or it failed)."""

    room: str
    peer_id: str
    subscription_id: str
    stream_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ConnectionStateChanged:
    room: str
    peer_id: str
    connection_id: str
    state: str


@dataclass(frozen=True, slots=True)
class ActiveSpeaker:
    room: str
    peer_id: str | None


@dataclass(frozen=True, slots=True)
class RoomClosed:
    room: str


@dataclass(frozen=True, slots=True)
class LayersNeeded:
    """Dynacast: the encodings (rids) of a published simulcast video track that some
    subscriber (or tap) currently needs, lowest first; ``()`` when no one needs any.
    Emitted when the set changes. ``peer_id`` is the publisher: signalling tells its
    client, which deactivates the other encodings."""

    room: str
    peer_id: str
    stream_id: str
    track_id: str
    rids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TrackPaused:
    """A subscriber's video stopped on purpose: ``reason`` "bandwidth" (nothing fits its
    estimate: audio keeps flowing) or "hidden" (its preferences say not visible).
    ``peer_id`` is the subscriber. Not a freeze: show a paused state."""

    room: str
    peer_id: str
    subscription_id: str
    stream_id: str
    track_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class TrackResumed:
    """A paused subscriber video flows again (from its next keyframe)."""

    room: str
    peer_id: str
    subscription_id: str
    stream_id: str
    track_id: str


@dataclass(frozen=True, slots=True)
class LayerChanged:
    """A subscriber's video switched to another encoding (at its keyframe).
    ``width``/``height`` as last seen in that encoding's keyframes (0 if not yet)."""

    room: str
    peer_id: str
    subscription_id: str
    stream_id: str
    track_id: str
    rid: str
    width: int
    height: int


Event = (
    PeerJoined
    | PeerLeft
    | StreamAdded
    | StreamRemoved
    | TrackAdded
    | TrackRemoved
    | SubscriptionClosed
    | ConnectionStateChanged
    | ActiveSpeaker
    | RoomClosed
    | LayersNeeded
    | TrackPaused
    | TrackResumed
    | LayerChanged
)
Listener = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out to listeners; a failing listener is logged, never propagated."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def add(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("SFU event listener failed on %r", event)
