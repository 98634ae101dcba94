"""The messages of the classroom live channel (:mod:`vtp.web.live`), one model per type.

Client messages are read leniently (fields the server does not know are ignored, as the
browser client has always been allowed to send them), but every field it reads is
typed: a ``user_id`` that is not a UUID or a ``kind`` that is not "audio"/"video" is a
``validation_error``. Server messages are what is sent, as declared here.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vtp.api.errors import error_body
from vtp.channel.messages import MessageSet, ServerMessage

MediaKind = Literal["audio", "video"]


class ClientMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Auth(ClientMessage):
    """First, and again with a fresh token before the current one expires."""

    type: Literal["auth"]
    token: Annotated[str, Field(min_length=1, max_length=4096)]


class Ping(ClientMessage):
    type: Literal["ping"]


class Hand(ClientMessage):
    type: Literal["hand"]
    raised: bool = False


class LowerHand(ClientMessage):
    type: Literal["lower-hand"]
    user_id: uuid.UUID


class Media(ClientMessage):
    type: Literal["media"]
    audio: bool = False
    video: bool = False
    screen: bool = False


class Mute(ClientMessage):
    type: Literal["mute"]
    user_id: uuid.UUID
    kind: MediaKind = "audio"
    locked: bool = False


class Unmute(ClientMessage):
    """Oneself (no ``user_id``, or one's own), or, for a presenter, someone else."""

    type: Literal["unmute"]
    kind: MediaKind = "audio"
    user_id: uuid.UUID | None = None


class Remove(ClientMessage):
    type: Literal["remove"]
    user_id: uuid.UUID
    reason: Annotated[str, Field(max_length=2000)] | None = None


class Record(ClientMessage):
    type: Literal["record"]
    action: Literal["start", "stop"]


class End(ClientMessage):
    type: Literal["end"]


CLIENT_MESSAGES: tuple[type[ClientMessage], ...] = (
    Auth,
    Ping,
    Hand,
    LowerHand,
    Media,
    Mute,
    Unmute,
    Remove,
    Record,
    End,
)
CLIENT: MessageSet[ClientMessage] = MessageSet(CLIENT_MESSAGES)


# --- server messages -----------------------------------------------------------------------


class Ready(ServerMessage):
    type: Literal["ready"] = "ready"
    you: dict[str, Any]  # {user_id, role, display}
    participants: list[dict[str, Any]]
    recording: dict[str, Any]  # {available, active, reason}
    now: str


class Recording(ServerMessage):
    type: Literal["recording"] = "recording"
    recording: dict[str, Any]
    reason: str


class ParticipantJoined(ServerMessage):
    type: Literal["participant-joined"] = "participant-joined"
    participant: dict[str, Any]


class ParticipantLeft(ServerMessage):
    type: Literal["participant-left"] = "participant-left"
    user_id: str
    reason: str


class HandState(ServerMessage):
    type: Literal["hand"] = "hand"
    user_id: str
    raised: bool
    at: str | None


class MediaState(ServerMessage):
    type: Literal["media"] = "media"
    user_id: str
    audio: bool
    video: bool
    screen: bool


class Muted(ServerMessage):
    type: Literal["muted"] = "muted"
    user_id: str
    kind: MediaKind
    by: str
    locked: bool


class Unmuted(ServerMessage):
    type: Literal["unmuted"] = "unmuted"
    user_id: str
    kind: MediaKind
    by: str


class Removed(ServerMessage):
    type: Literal["removed"] = "removed"
    by: str | None
    reason: str


class Chat(ServerMessage):
    type: Literal["chat"] = "chat"
    event: str  # created, edited, deleted
    message: dict[str, Any]


class Role(ServerMessage):
    type: Literal["role"] = "role"
    user_id: str
    role: str


class Ended(ServerMessage):
    type: Literal["ended"] = "ended"
    by: str | None


class Authenticated(ServerMessage):
    type: Literal["authenticated"] = "authenticated"
    user_id: str
    expires_at: int


class Pong(ServerMessage):
    type: Literal["pong"] = "pong"


class ErrorMessage(ServerMessage):
    type: Literal["error"] = "error"
    error: dict[str, Any]

    @classmethod
    def of(cls, code: str, message: str, details: Any = None) -> ErrorMessage:
        return cls(error=error_body(code, message, details)["error"])


SERVER_MESSAGES: tuple[type[ServerMessage], ...] = (
    Ready,
    Recording,
    ParticipantJoined,
    ParticipantLeft,
    HandState,
    MediaState,
    Muted,
    Unmuted,
    Removed,
    Chat,
    Role,
    Ended,
    Authenticated,
    Pong,
    ErrorMessage,
)
