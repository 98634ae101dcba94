"""What an in-process consumer of published media (the recorder) may rely on: the
contract between the SFU and whatever taps its tracks.

A tap is to a file what a down track is to a subscriber (Galene's disk writer is one
more down track): it gets every forwarded packet of one published track, in one
continuous ``fseq`` numbering, and can ask for a keyframe or read the publisher's last
sender report. The SFU (:class:`vtp.sfu.Sfu`, its rooms, :class:`vtp.sfu.uptrack.Tap`)
implements these protocols; the recorder imports this module and
:mod:`vtp.sfu.events`, never the SFU's classes (import-linter contract
``recorder-taps`` in pyproject.toml).

This module imports nothing of the SFU: it is the edge of the media plane's two halves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from vtp.sfu.events import Event


@dataclass(frozen=True, slots=True)
class TrackInfo:
    id: str
    kind: str  # "audio" or "video"
    codec: str  # its MIME type, e.g. "video/VP8"


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A live publication: the tracks one peer sends together."""

    id: str
    peer_id: str
    label: str
    tracks: tuple[TrackInfo, ...]


class TapPacket(Protocol):
    """One forwarded RTP packet, as a tap sees it (:class:`vtp.sfu.uptrack.UpPacket`)."""

    @property
    def fseq(self) -> int:
        """Forwarded sequence number: continuous, across simulcast layer moves too."""

    @property
    def uts(self) -> int:
        """Unwrapped RTP timestamp, in the track's clock."""

    @property
    def marker(self) -> int: ...

    @property
    def payload(self) -> bytes:
        """The codec payload (VP8/VP9 payload descriptor included)."""

    @property
    def keyframe(self) -> bool: ...

    @property
    def audio_level(self) -> int:
        """The RFC 6464 level byte, or -1."""


# Called with the layer the packet came from (opaque to consumers) and the packet, on
# the SFU's receive path: it must not block, and an exception closes the tap.
TapCallback = Callable[[object, TapPacket], None]


class TapHandle(Protocol):
    """A consumer's hold on one published track."""

    def request_keyframe(self) -> None: ...

    def sender_report(self) -> tuple[int, int] | None:
        """The publisher's last (NTP time, unwrapped RTP timestamp) pair, for A/V sync."""

    def close(self) -> None: ...


class TapRoom(Protocol):
    """A room, as a consumer of its media sees it."""

    @property
    def name(self) -> str: ...

    def streams(self) -> list[StreamInfo]:
        """Its live publications (connected and announced)."""

    def add_tap(self, track_id: str, callback: TapCallback) -> TapHandle:
        """Receive every packet of a live track; raises if there is no such track."""


class MediaSource(Protocol):
    """The SFU, as a consumer of its media sees it."""

    def room(self, name: str) -> TapRoom: ...

    def add_listener(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """Hear every room's events (:mod:`vtp.sfu.events`); returns the remover."""
