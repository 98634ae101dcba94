"""/api/v1/sfu: the SFU's REST API (health, capabilities, transports, room state).

It follows the shape of mediasoup's API, with SDP in place of mediasoup's ORTC
parameters (docs/protocol.md, "REST"): a *transport* is one unidirectional peer
connection. Creating a ``send`` transport takes the client's SDP offer and returns the
answer (mediasoup's create + connect + produce in one call); creating a ``recv``
transport names a stream and returns the server's SDP offer, which ``connect`` completes
with the client's answer (create + consume, then connect). The caller's REST transports in
a room belong to one SFU peer of theirs, created with the first transport and removed
with the last.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field

from vtp.api.access import authenticated, principal_of, public
from vtp.api.endpoint import ReadBody, endpoint, reply
from vtp.api.errors import ApiError, forbidden, not_found
from vtp.api.middleware import bearer_token
from vtp.api.validation import Body, Out, may_be_absent
from vtp.appkeys import SFU_KEY
from vtp.auth.principal import Principal
from vtp.sfu import Connection, DownConnection, Room, SfuError, UpConnection
from vtp.signalling import quotas, rights
from vtp.signalling.access import may_read_room_state, valid_room_name
from vtp.signalling.members import MEMBERS, Member
from vtp.signalling.messages import MAX_SDP_CHARS
from vtp.signalling.refusals import sfu_api_error
from vtp.signalling.websocket import join_room

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

PREFIX = "/api/v1/sfu"
Sdp = Annotated[str, Field(min_length=1, max_length=MAX_SDP_CHARS)]
Id = Annotated[str, Field(min_length=1, max_length=128)]


class TransportCreate(Body):
    direction: Literal["send", "recv"]
    sdp: Sdp | None = None  # send: the client's offer
    label: Annotated[str, Field(max_length=64)] = ""  # send: e.g. "camera", "screen"
    stream_id: Id | None = None  # recv: the stream to receive


class TransportConnect(Body):
    sdp: Sdp  # the client's answer to a recv transport's offer


class IceCandidate(Body):
    candidate: Annotated[str, Field(max_length=1024)] | None
    sdp_mid: Annotated[str, Field(max_length=32)] | None = None
    sdp_mline_index: Annotated[int, Field(ge=0, le=64)] | None = None


class SfuHealthOut(Out):
    status: Literal["ok", "stopped"]
    rooms: int
    peers: int


class CodecOut(Out):
    """One codec the SFU forwards, in mediasoup's RtpCodecCapability shape."""

    kind: Literal["audio", "video"]
    mimeType: str
    clockRate: int
    channels: int | None = may_be_absent()
    rtcpFeedback: list[str] | None = may_be_absent()
    parameters: dict[str, int | str] | None = may_be_absent()


class HeaderExtensionOut(Out):
    uri: str


class RtpCapabilitiesOut(Out):
    codecs: list[CodecOut]
    headerExtensions: list[HeaderExtensionOut]


class IceServerOut(Out):
    """An RTCIceServer dictionary (TURN ones carry a short-lived credential)."""

    urls: list[str]
    username: str | None = may_be_absent()
    credential: str | None = may_be_absent()


class IceServersOut(Out):
    ice_servers: list[IceServerOut]


class TransportTrackOut(Out):
    track_id: str
    kind: str
    codec: str


class TransportOut(Out):
    """A created transport: a send one carries the SDP answer and the tracks published,
    a recv one the server's SDP offer (``connect`` answers it)."""

    transport_id: str
    direction: Literal["send", "recv"]
    peer_id: str
    stream_id: str
    type: Literal["answer", "offer"]
    sdp: str
    tracks: list[TransportTrackOut] | None = may_be_absent()  # send only


class RoomPeerOut(Out):
    peer_id: str
    user_id: str | None  # null: a peer no member stands for
    display: str
    role: str | None
    via: str | None = may_be_absent()


# A track's counters are the SFU's own (UpTrack.stats / DownTrack.stats), passed through
# as they are: the SFU adds a counter without an API change.
TrackCounters = dict[str, Any]


class ConnectionOut(Out):
    id: str
    type: str
    state: str
    tracks: list[TrackCounters]
    peer_id: str


class ProducerOut(ConnectionOut):
    """A publication (send transport) and its tracks' counters."""

    label: str
    unrouted: int
    transport_cc: dict[str, int] | None


class ConsumerOut(ConnectionOut):
    """A subscription (recv transport) and its tracks' counters."""

    stream: str


class RoomStateOut(Out):
    room: str
    active_speaker: str | None
    peers: list[RoomPeerOut]
    streams: list[str]
    producers: list[ProducerOut]
    consumers: list[ConsumerOut]


def _room_name(request: web.Request) -> str:
    room = request.match_info["room"]
    if not valid_room_name(room):
        raise ApiError(
            400,
            "validation_error",
            "invalid room name",
            [{"field": "room", "message": "1-64 of A-Z a-z 0-9 . _ -, not starting with . _ -"}],
        )
    return room


def _required(value: str | None, field: str, direction: str) -> str:
    if value is None:
        raise ApiError(
            400,
            "validation_error",
            "request body is invalid",
            [{"field": field, "message": f"required for direction {direction!r}"}],
        )
    return value


async def _rest_member(request: web.Request, principal: Principal, room_name: str) -> Member:
    """The caller's REST peer in the room, joined on first use."""
    app = request.app
    members = app[MEMBERS]
    token = bearer_token(request) or ""
    existing = members.find(room_name, principal.user_id, "rest")
    if existing is not None and not existing.peer.left:
        existing.data["token"] = token  # the newest one is re-checked on changes
        return existing
    grant, display = await join_room(app, principal, room_name, path=request.path_qs)
    existing = members.find(room_name, principal.user_id, "rest")  # a concurrent call won
    if existing is not None and not existing.peer.left:
        existing.data["token"] = token
        return existing
    try:
        peer = app[SFU_KEY].room(room_name).join(None, display)
    except SfuError as exc:
        raise sfu_api_error(exc) from None
    member = Member(
        room=room_name,
        peer=peer,
        user_id=principal.user_id,
        display=display,
        role=grant.role,
        may_publish=grant.may_publish,
        via="rest",
    )
    members.add(member)
    rights.watch_http_member(app, member, token, grant)
    return member


def _own_transport(request: web.Request) -> tuple[Member, Connection]:
    principal = principal_of(request)
    room_name = _room_name(request)
    member = request.app[MEMBERS].find(room_name, principal.user_id, "rest")
    transport_id = request.match_info["transport_id"]
    conn = member.peer.connections.get(transport_id) if member is not None else None
    if member is None or conn is None:
        raise not_found(f"you have no transport {transport_id!r} in room {room_name!r}")
    member.peer.touch()
    return member, conn


async def _leave_if_idle(member: Member) -> None:
    if not member.peer.connections:
        await member.peer.leave("no transports")  # Members forgets it on PeerLeft


@routes.get(f"{PREFIX}/health")
@public
@endpoint(returns=SfuHealthOut, status=(200, 503))
async def sfu_health(request: web.Request) -> web.Response:
    sfu = request.app[SFU_KEY]
    health = SfuHealthOut(
        status="ok" if sfu.started else "stopped",
        rooms=len(sfu.rooms),
        peers=sum(len(r.peers) for r in sfu.rooms.values()),
    )
    return reply(health, 200 if sfu.started else 503)


@routes.get(f"{PREFIX}/rtp-capabilities")
@authenticated
@endpoint(returns=RtpCapabilitiesOut)
async def rtp_capabilities(request: web.Request) -> RtpCapabilitiesOut:
    return RtpCapabilitiesOut.model_validate(request.app[SFU_KEY].rtp_capabilities())


@routes.get(f"{PREFIX}/ice-servers")
@authenticated
@endpoint(returns=IceServersOut)
async def ice_servers(request: web.Request) -> IceServersOut:
    principal = principal_of(request)
    servers = request.app[SFU_KEY].ice_servers(str(principal.user_id))
    return IceServersOut.model_validate({"ice_servers": servers})


@routes.post(PREFIX + "/rooms/{room}/transports")
@authenticated
@endpoint(body=TransportCreate, returns=TransportOut, status=201, errors=(403, 429, 503))
async def create_transport(
    request: web.Request, read_body: ReadBody[TransportCreate]
) -> web.Response:
    principal = principal_of(request)
    room_name = _room_name(request)
    body = await read_body()
    if body.direction == "send":
        offer = _required(body.sdp, "sdp", "send")
    else:
        stream_id = _required(body.stream_id, "stream_id", "recv")
    member = await _rest_member(request, principal, room_name)
    result: TransportOut
    try:
        quotas.check_connection(request.app, principal.user_id)
        if body.direction == "send":
            # The right to publish is the one held now, not the one at join.
            grant = await rights.regrant(request.app, member, principal, "publish")
            if grant is None:
                raise forbidden(f"you may no longer be in room {room_name!r}")
            if not grant.may_publish:
                raise forbidden("your room role may not publish")
            pub = await member.peer.publish(offer, label=body.label)
            result = TransportOut(
                transport_id=pub.id,
                direction="send",
                peer_id=member.peer.id,
                stream_id=pub.id,
                type="answer",
                sdp=pub.answer_sdp,
                tracks=[
                    TransportTrackOut(track_id=t.id, kind=t.kind, codec=t.mime_type)
                    for t in pub.tracks
                ],
            )
        else:
            sub = await member.peer.subscribe(stream_id)
            result = TransportOut(
                transport_id=sub.id,
                direction="recv",
                peer_id=member.peer.id,
                stream_id=sub.stream_id,
                type="offer",
                sdp=sub.offer_sdp,
            )
    except SfuError as exc:
        await _leave_if_idle(member)
        raise sfu_api_error(exc) from None
    except ApiError:
        await _leave_if_idle(member)
        raise
    location = f"{PREFIX}/rooms/{room_name}/transports/{result.transport_id}"
    return reply(result, 201, headers={"Location": location})


@routes.post(PREFIX + "/rooms/{room}/transports/{transport_id}/connect")
@authenticated
@endpoint(body=TransportConnect, status=204, errors=(404, 409))
async def connect_transport(
    request: web.Request, read_body: ReadBody[TransportConnect]
) -> web.Response:
    member, conn = _own_transport(request)
    body = await read_body()
    if not isinstance(conn, DownConnection):
        raise ApiError(409, "bad_state", "a send transport is connected by its create answer")
    try:
        await member.peer.answer(conn.id, body.sdp)
    except SfuError as exc:
        raise sfu_api_error(exc) from None
    return web.Response(status=204)


@routes.post(PREFIX + "/rooms/{room}/transports/{transport_id}/ice")
@authenticated
@endpoint(body=IceCandidate, status=204, errors=(404,))
async def transport_ice(request: web.Request, read_body: ReadBody[IceCandidate]) -> web.Response:
    member, conn = _own_transport(request)
    body = await read_body()
    try:
        await member.peer.add_ice_candidate(
            conn.id, body.candidate or None, body.sdp_mid, body.sdp_mline_index
        )
    except SfuError as exc:
        raise sfu_api_error(exc) from None
    return web.Response(status=204)


@routes.delete(PREFIX + "/rooms/{room}/transports/{transport_id}")
@authenticated
@endpoint(status=204, errors=(400, 404))
async def close_transport(request: web.Request) -> web.Response:
    member, conn = _own_transport(request)
    try:
        await member.peer.close_connection(conn.id)
    except SfuError as exc:
        raise sfu_api_error(exc) from None
    await _leave_if_idle(member)
    return web.Response(status=204)


def room_state(room: Room, members: list[Member]) -> RoomStateOut:
    """Peers, producers (publications), consumers (subscriptions) with their counters."""
    by_peer = {member.peer.id: member for member in members}
    peers: list[dict[str, Any]] = []
    producers: list[dict[str, Any]] = []
    consumers: list[dict[str, Any]] = []
    for peer in room.peers.values():
        member = by_peer.get(peer.id)
        peers.append(
            member.to_json()
            if member is not None
            else {"peer_id": peer.id, "user_id": None, "display": peer.display, "role": None}
        )
        for conn in list(peer.connections.values()):
            if isinstance(conn, UpConnection):
                producers.append({**conn.stats(), "peer_id": peer.id})
            elif isinstance(conn, DownConnection):
                consumers.append({**conn.stats(), "peer_id": peer.id})
    return RoomStateOut.model_validate(
        {
            "room": room.name,
            "active_speaker": room.speaker.current,
            "peers": peers,
            "streams": [s.id for s in room.streams()],
            "producers": producers,
            "consumers": consumers,
        }
    )


@routes.get(PREFIX + "/rooms/{room}")
@authenticated
@endpoint(returns=RoomStateOut, errors=(400, 403, 404))
async def get_room(request: web.Request) -> RoomStateOut:
    principal = principal_of(request)
    room_name = _room_name(request)
    members = request.app[MEMBERS]
    is_member = members.is_member(room_name, principal.user_id)
    if not await may_read_room_state(request.app, principal, room_name, is_member=is_member):
        raise forbidden("only the room's members, its course's staff and admins may see its state")
    room = request.app[SFU_KEY].get_room(room_name)
    if room is None or room.closed:
        raise not_found(f"no room {room_name!r}")
    return room_state(room, members.in_room(room_name))
