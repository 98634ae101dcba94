"""The JSON messages of the SFU signalling WebSocket (see docs/protocol.md).

Every message is a JSON object with a ``type``. Client messages are validated strictly
(unknown fields are refused); server messages are built from the models below so that
what is sent is what is documented. Field names are snake_case like the REST API;
``request_id`` (optional, any short string the client chooses) is echoed in the reply or
error to a request.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vtp.api.errors import error_body
from vtp.channel.messages import MessageError as MessageError
from vtp.channel.messages import MessageSet, RequestId, ServerMessage
from vtp.channel.messages import message_type as message_type

MAX_SDP_CHARS = 64 * 1024
Id = Annotated[str, Field(min_length=1, max_length=128)]
Sdp = Annotated[str, Field(min_length=1, max_length=MAX_SDP_CHARS)]


class ClientMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    request_id: RequestId | None = None


class Auth(ClientMessage):
    """First message when no Authorization header was sent: the JWT access token."""

    type: Literal["auth"]
    token: Annotated[str, Field(min_length=1, max_length=4096)]


class Join(ClientMessage):
    type: Literal["join"]
    room: Annotated[str, Field(min_length=1, max_length=64)]
    # the last joined reply's resume_token: take the peer back from a dropped socket
    resume_token: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    # with resume_token: the connections the client knows (each published, each
    # subscription answered); the peer's others, made for a reply the dropped socket
    # never delivered, close. Omitted: all carry on.
    connections: Annotated[list[Id], Field(max_length=256)] | None = None
    # the client means to publish: it is served where the room lives (relayed there by
    # this node if need be), never from a cascade's copy of the room, where only the
    # room's own streams are published
    publish: bool = False


class Publish(ClientMessage):
    type: Literal["publish"]
    sdp: Sdp
    label: Annotated[str, Field(max_length=64)] = ""


class Unpublish(ClientMessage):
    type: Literal["unpublish"]
    stream_id: Id


class Subscribe(ClientMessage):
    type: Literal["subscribe"]
    stream_id: Id


class Answer(ClientMessage):
    type: Literal["answer"]
    subscription_id: Id
    sdp: Sdp


class Unsubscribe(ClientMessage):
    type: Literal["unsubscribe"]
    subscription_id: Id


class Ice(ClientMessage):
    """A trickled candidate for one of the client's connections; an empty or null
    ``candidate`` means end of candidates."""

    type: Literal["ice"]
    connection_id: Id
    candidate: Annotated[str, Field(max_length=1024)] | None
    sdp_mid: Annotated[str, Field(max_length=32)] | None = None
    sdp_mline_index: Annotated[int, Field(ge=0, le=64)] | None = None


class VideoView(BaseModel):
    """How the client shows one subscription's video (adaptive stream)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    subscription_id: Id
    width: Annotated[int, Field(ge=0, le=16384)]  # rendered size in device pixels
    height: Annotated[int, Field(ge=0, le=16384)]
    visible: bool
    # frames per second it needs (0: full rate): a lower temporal layer when it covers it
    fps: Annotated[int, Field(ge=0, le=240)] = 0


class View(ClientMessage):
    """Adaptive stream: rendered sizes and visibility of subscribed videos."""

    type: Literal["view"]
    views: Annotated[list[VideoView], Field(min_length=1, max_length=100)]


class RestartIce(ClientMessage):
    """The client's network changed: restart ICE on one of its connections."""

    type: Literal["restart-ice"]
    connection_id: Id


class Leave(ClientMessage):
    type: Literal["leave"]


class Ping(ClientMessage):
    type: Literal["ping"]


CLIENT_MESSAGES: tuple[type[ClientMessage], ...] = (
    Auth,
    Join,
    Publish,
    Unpublish,
    Subscribe,
    Answer,
    Unsubscribe,
    Ice,
    View,
    RestartIce,
    Leave,
    Ping,
)
CLIENT = MessageSet(CLIENT_MESSAGES)


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """Decode and validate one client message; raises :class:`MessageError`."""
    return CLIENT.parse(raw)


# --- server messages -----------------------------------------------------------------------


class Reply(ServerMessage):
    request_id: str | None = None


class PeerInfo(BaseModel):
    peer_id: str
    user_id: str | None
    display: str
    role: str | None


class TrackDesc(BaseModel):
    track_id: str
    kind: str
    codec: str | None = None


class Authenticated(Reply):
    type: Literal["authenticated"] = "authenticated"
    user_id: str
    role: str


class Joined(Reply):
    type: Literal["joined"] = "joined"
    room: str
    peer_id: str
    role: str
    may_publish: bool
    ice_servers: list[dict[str, Any]]
    peers: list[PeerInfo]
    active_speaker: str | None
    # send in the next join after this socket drops, to carry on as this same peer
    resume_token: str | None = None
    resumed: bool = False  # the same peer as before: its connections carry on
    connections: list[str] = Field(default_factory=list)  # (resumed) its live ones


class Published(Reply):
    type: Literal["published"] = "published"
    stream_id: str
    sdp: str
    tracks: list[TrackDesc]


class Unpublished(Reply):
    type: Literal["unpublished"] = "unpublished"
    stream_id: str


class Offer(Reply):
    type: Literal["offer"] = "offer"
    subscription_id: str
    stream_id: str
    sdp: str


class Answered(Reply):
    type: Literal["answered"] = "answered"
    subscription_id: str


class Unsubscribed(Reply):
    type: Literal["unsubscribed"] = "unsubscribed"
    subscription_id: str


class IceRestarted(Reply):
    type: Literal["ice-restarted"] = "ice-restarted"
    connection_id: str
    sdp: str


class Left(Reply):
    type: Literal["left"] = "left"
    room: str
    reason: str


class Pong(Reply):
    type: Literal["pong"] = "pong"


class ErrorMessage(Reply):
    type: Literal["error"] = "error"
    error: dict[str, Any]

    @classmethod
    def of(
        cls, code: str, message: str, details: Any = None, request_id: str | None = None
    ) -> ErrorMessage:
        return cls(request_id=request_id, error=error_body(code, message, details)["error"])


class PeerJoined(ServerMessage):
    type: Literal["peer-joined"] = "peer-joined"
    peer: PeerInfo


class PeerLeft(ServerMessage):
    type: Literal["peer-left"] = "peer-left"
    peer_id: str
    reason: str


class StreamAdded(ServerMessage):
    type: Literal["stream-added"] = "stream-added"
    stream_id: str
    peer_id: str
    label: str
    tracks: list[TrackDesc]


class StreamRemoved(ServerMessage):
    type: Literal["stream-removed"] = "stream-removed"
    stream_id: str
    peer_id: str


class TrackAdded(ServerMessage):
    type: Literal["track-added"] = "track-added"
    stream_id: str
    peer_id: str
    track_id: str
    kind: str


class TrackRemoved(ServerMessage):
    type: Literal["track-removed"] = "track-removed"
    stream_id: str
    peer_id: str
    track_id: str
    kind: str


class SubscriptionClosed(ServerMessage):
    type: Literal["subscription-closed"] = "subscription-closed"
    subscription_id: str
    stream_id: str
    reason: str


class ConnectionState(ServerMessage):
    type: Literal["connection-state"] = "connection-state"
    connection_id: str
    state: str


class Grant(ServerMessage):
    type: Literal["grant"] = "grant"
    room: str
    role: str
    may_publish: bool
    reason: str


class ActiveSpeaker(ServerMessage):
    type: Literal["active-speaker"] = "active-speaker"
    peer_id: str | None


class LayersNeeded(ServerMessage):
    """Dynacast, to the publisher: the encodings (rids) of its simulcast video that
    someone needs; the client deactivates the others."""

    type: Literal["layers-needed"] = "layers-needed"
    stream_id: str
    track_id: str
    rids: list[str]


class VideoPaused(ServerMessage):
    type: Literal["video-paused"] = "video-paused"
    subscription_id: str
    stream_id: str
    track_id: str
    reason: str


class VideoResumed(ServerMessage):
    type: Literal["video-resumed"] = "video-resumed"
    subscription_id: str
    stream_id: str
    track_id: str


class Reconnect(ServerMessage):
    """This node is going away (draining): the peer is gone from it; join again at
    ``url`` (the room's new node), or, when it is None, at the page's node later."""

    type: Literal["reconnect"] = "reconnect"
    room: str
    url: str | None
    reason: str


SERVER_MESSAGES: tuple[type[ServerMessage], ...] = (
    Authenticated,
    Joined,
    Published,
    Unpublished,
    Offer,
    Answered,
    Unsubscribed,
    IceRestarted,
    Left,
    Pong,
    ErrorMessage,
    PeerJoined,
    PeerLeft,
    StreamAdded,
    StreamRemoved,
    TrackAdded,
    TrackRemoved,
    SubscriptionClosed,
    ConnectionState,
    ActiveSpeaker,
    Grant,
    LayersNeeded,
    VideoPaused,
    VideoResumed,
    Reconnect,
)


ERROR_CODES: dict[str, str] = {
    "invalid_json": "the message is not a JSON object",
    "validation_error": "a field is missing, unknown, of the wrong type or too long",
    "unknown_type": "the message type is not one of the client messages",
    "not_authenticated": "a message other than auth came before authentication",
    "token_invalid": "the token is malformed, has a bad signature or is not an access token",
    "token_expired": "the token has expired",
    "token_revoked": "the token was revoked (logout, role change)",
    "not_joined": "the message needs a joined room (join first)",
    "already_joined": "join sent while in a room (leave first)",
    "forbidden": "room access refused, or the room role may not do this",
    "bad_request": "the SFU refused a name or id",
    "bad_sdp": "the SDP offer or answer was refused (details in the message)",
    "bad_candidate": "the ICE candidate could not be parsed",
    "not_found": "no such stream, subscription or connection (of this peer)",
    "unsupported": "the server cannot do this here (ICE restart without VTP_ICE_UDP_PORT)",
    "bad_state": "the request does not fit the connection's state (e.g. answered twice)",
    "relayed_room": "publish on a cascade's copy of the room: join again with publish: true",
    "conflict": "the peer id is already in the room",
    "too_many_peers": "the user already has 8 peers in the room (HTTP 429)",
    "too_many_rooms": "the user is in VTP_MAX_ROOMS_PER_USER rooms already (HTTP 429)",
    "too_many_connections": "the user has VTP_MAX_PEER_CONNECTIONS_PER_USER open (HTTP 429)",
    "too_many_publications": "the user has VTP_MAX_WHIP_PER_USER WHIP sessions (HTTP 429)",
    "too_many_sessions": "the user has VTP_MAX_WEBSOCKETS_PER_USER open (HTTP 429; 4429)",
    "rate_limited": "the socket sent faster than its rate: closed with 4429",
    "room_elsewhere": "another node serves the room: join there (details: its URL; HTTP 307)",
    "no_node": "no cluster node is registered to serve the room (HTTP 503)",
    "node_gone": "the node serving the room of a relayed socket is gone: closed with 1012",
    "internal_error": "the server failed; the room and the other peers are not affected",
}
