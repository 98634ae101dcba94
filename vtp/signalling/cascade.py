"""Cascade: a room's subscribers served by another node, from one relayed copy per stream.

When a room's node (the *origin*) is loaded past ``VTP_CASCADE_PEERS``, a subscriber
arriving at another node (an *edge*) is served there (:func:`vtp.signalling.placement.
cascade_here` decides) instead of being redirected. The relay between the two is a WebRTC
peer connection made of the SFU's own objects, one per stream:

* on the origin, the edge is one more subscriber: a relay peer ``cascade-<edge id>``
  whose subscription to the stream offers it (sendonly), as it would to a client (but
  as a full ICE agent on a port of its own: both nodes may serve on ICE-lite ports);
* on the edge, that offer is what a publisher sends: a relay peer (named as the origin's
  publisher) publishes it into the edge's room of the same name (marked relayed:
  ``Room.origin``), and its answer goes back to the origin's subscription.

The edge's subscribers then get the stream through the edge's own fan-out; what flows
back crosses the relay as any subscriber's RTCP does: their PLIs, coalesced by the edge's
up track, reach the origin's down track, whose up track (coalescing again) asks the
publisher; NACKs the edge cannot serve are answered from the origin's packet cache; the
edge's receiver reports and REMB (what its subscribers can take) feed the origin's
estimate of the relay's bandwidth, which picks the simulcast layer it forwards; and the
edge tells the origin the merged view of its subscribers (largest size, any visible) so
that layer covers them all. A video no subscriber of the edge shows (or none subscribes
to) is not sent across at all (the origin's relay track is paused, as for a hidden tile)
until one does: the edge checks its views every ``VIEW_S``.

Node-to-node signalling is HTTP on the origin (``POST /api/v1/cluster/cascade/{room}/
{action}``), authenticated with a short-lived node token (:mod:`vtp.cluster.nodetoken`,
header ``X-VTP-Node-Token``) of a node in the registry. The edge polls the origin's
streams every ``SYNC_S`` and relays each (again, if its relay dropped); a stream gone
from the origin ends on the edge. The cascade ends - the edge's relay peers leave, its
subscribers see the streams end - when the edge's last local peer has left (for
``IDLE_S``), when the origin no longer has the room, or when it stops answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel, Field

from vtp.api.access import public
from vtp.api.endpoint import ReadBody, endpoint
from vtp.api.errors import ApiError
from vtp.api.validation import Body
from vtp.appkeys import CONFIG, NODES, SFU_KEY
from vtp.auth.secret import load_or_create_secret
from vtp.cluster import nodetoken
from vtp.cluster.nodes import NodeInfo
from vtp.sfu import DownConnection, Peer, Room, SfuError, UpConnection
from vtp.signalling.access import valid_room_name
from vtp.signalling.messages import MAX_SDP_CHARS
from vtp.signalling.refusals import sfu_api_error

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

ROOM_PATH = "/api/v1/cluster/cascade/{room}"  # + "/" + the step (relay_*)
TOKEN_HEADER = "X-VTP-Node-Token"
SYNC_S = 1.0  # how often an edge reads the origin's streams
VIEW_S = 0.25  # how often it checks what its subscribers show (the origin hears of changes)
NOT_SHOWN = (0, 0, False)  # a view: no subscriber of the edge shows the video
IDLE_S = 3.0  # an edge without local peers this long ends its cascade
MAX_FAILURES = 3  # consecutive unanswered syncs before the origin counts as gone
REQUEST_TIMEOUT_S = 10.0

Sdp = Annotated[str, Field(min_length=1, max_length=MAX_SDP_CHARS)]
Id = Annotated[str, Field(min_length=1, max_length=128)]


def relay_peer_id(edge_id: str) -> str:
    return f"cascade-{edge_id}"


def node_key(app: web.Application) -> bytes:
    """The key node tokens are made with (from the secret every node shares)."""
    config = app[CONFIG]
    secret = (
        config.jwt_secret.get_secret_value()
        if config.jwt_secret
        else load_or_create_secret(config.data_dir / "jwt_secret")
    )
    return nodetoken.node_key(secret)


# --- the origin's side ------------------------------------------------------------------


class TrackOut(BaseModel):
    id: str
    kind: str


class StreamOut(BaseModel):
    id: str
    peer_id: str
    display: str
    label: str
    tracks: list[TrackOut]


class StreamsOut(BaseModel):
    streams: list[StreamOut]


class SubscribeIn(Body):
    stream_id: Id


class OfferOut(BaseModel):
    subscription_id: str
    sdp: str


class AnswerIn(Body):
    subscription_id: Id
    sdp: Sdp


class ViewIn(Body):
    subscription_id: Id
    track_id: Id
    width: Annotated[int, Field(ge=0, le=16384)] = 0
    height: Annotated[int, Field(ge=0, le=16384)] = 0
    visible: bool = True


class CloseIn(Body):
    subscription_id: Id


async def _calling_node(request: web.Request) -> str:
    """The id of the live node that signed this request, or a 401/403."""
    token = request.headers.get(TOKEN_HEADER, "")
    node_id = nodetoken.verify(node_key(request.app), token)
    if node_id is None:
        raise ApiError(401, "bad_node_token", "a valid node token is required")
    if node_id == request.app[NODES].id or await request.app[NODES].node(node_id) is None:
        raise ApiError(403, "unknown_node", f"node {node_id!r} is not in the registry")
    return node_id


async def _origin_room(request: web.Request) -> tuple[str, Room]:
    """The calling edge's id and the room it relays: open on this node, not relayed to it."""
    edge = await _calling_node(request)
    name = request.match_info["room"]
    if not valid_room_name(name):
        raise ApiError(400, "validation_error", "invalid room name")
    room = request.app[SFU_KEY].get_room(name)
    if room is None or room.closed or room.origin is not None:
        raise ApiError(404, "no_room", f"room {name!r} is not open on this node")
    return edge, room


async def _relay_peer(request: web.Request) -> Peer:
    """The calling edge's relay peer, which the steps after `relay_subscribe` act on."""
    edge, room = await _origin_room(request)
    peer = room.peers.get(relay_peer_id(edge))
    if peer is None:
        raise ApiError(404, "not_found", f"node {edge!r} relays nothing from this room")
    return peer


@contextlib.asynccontextmanager
async def _sfu_errors() -> AsyncIterator[None]:
    """An SFU refusal answered as an API error, as REST transports, WHIP and WHEP answer
    it (only nodes read these)."""
    try:
        yield
    except SfuError as exc:
        raise sfu_api_error(exc) from None


NODE_ERRORS = (400, 401, 403, 404)  # a bad room name, node token, unknown node, no room


@routes.post(ROOM_PATH + "/streams")
@public  # node to node: authenticated by the node token (_calling_node)
@endpoint(returns=StreamsOut, errors=NODE_ERRORS)
async def relay_streams(request: web.Request) -> StreamsOut:
    """The room's streams an edge relays (asking keeps the edge's relay peer alive)."""
    edge, room = await _origin_room(request)
    peer = room.peers.get(relay_peer_id(edge))
    if peer is not None:
        peer.touch()
    return StreamsOut(streams=_streams(room))


@routes.post(ROOM_PATH + "/subscribe")
@public
@endpoint(body=SubscribeIn, returns=OfferOut, errors=(*NODE_ERRORS, 409))
@_sfu_errors()
async def relay_subscribe(request: web.Request, read_body: ReadBody[SubscribeIn]) -> OfferOut:
    """The edge's relay peer subscribes to a stream: the subscription's offer."""
    edge, room = await _origin_room(request)
    body = await read_body()
    peer = room.peers.get(relay_peer_id(edge))
    if peer is None or peer.left:
        peer = room.join(relay_peer_id(edge), f"cascade to {edge}", relay=True)
    sub = await peer.subscribe(body.stream_id)
    return OfferOut(subscription_id=sub.id, sdp=sub.offer_sdp)


@routes.post(ROOM_PATH + "/answer")
@public
@endpoint(body=AnswerIn, status=204, errors=(*NODE_ERRORS, 409))
@_sfu_errors()
async def relay_answer(request: web.Request, read_body: ReadBody[AnswerIn]) -> web.Response:
    """The edge's answer to a relay subscription's offer."""
    peer = await _relay_peer(request)
    answer = await read_body()
    await peer.answer(answer.subscription_id, answer.sdp)
    return web.Response(status=204)


@routes.post(ROOM_PATH + "/view")
@public
@endpoint(body=ViewIn, status=204, errors=(*NODE_ERRORS, 409))
@_sfu_errors()
async def relay_view(request: web.Request, read_body: ReadBody[ViewIn]) -> web.Response:
    """The merged view of the edge's subscribers of a relayed video track."""
    peer = await _relay_peer(request)
    view = await read_body()
    peer.set_preferences(view.subscription_id, view.track_id, view.width, view.height, view.visible)
    return web.Response(status=204)


@routes.post(ROOM_PATH + "/close")
@public
@endpoint(body=CloseIn, status=204, errors=(*NODE_ERRORS, 409))
@_sfu_errors()
async def relay_close(request: web.Request, read_body: ReadBody[CloseIn]) -> web.Response:
    """One relay subscription ends (its stream ended on the edge)."""
    peer = await _relay_peer(request)
    close = await read_body()
    if isinstance(peer.connections.get(close.subscription_id), DownConnection):
        await peer.close_connection(close.subscription_id)
    return web.Response(status=204)


@routes.post(ROOM_PATH + "/leave")
@public
@endpoint(status=204, errors=(*NODE_ERRORS, 409))
@_sfu_errors()
async def relay_leave(request: web.Request) -> web.Response:
    """The edge's cascade ended: its relay peer leaves."""
    peer = await _relay_peer(request)
    await peer.leave("cascade ended")
    return web.Response(status=204)


def _streams(room: Room) -> list[StreamOut]:
    out = []
    for stream in room.streams():
        publisher = room.peers.get(stream.peer_id)
        if publisher is None or publisher.relay:
            continue
        out.append(
            StreamOut(
                id=stream.id,
                peer_id=stream.peer_id,
                display=publisher.display,
                label=stream.label,
                tracks=[TrackOut(id=t.id, kind=t.kind) for t in stream.tracks],
            )
        )
    return out


# --- the edge's side --------------------------------------------------------------------


class OriginGone(Exception):
    """The origin no longer holds the room (or refuses this node)."""


@dataclass
class Relay:
    """One origin stream relayed into the edge's room."""

    stream: StreamOut
    up: UpConnection
    subscription_id: str  # on the origin
    views: dict[str, tuple[int, int, bool]] = field(default_factory=dict)  # origin track id


class EdgeRoom:
    """An edge's cascade of one room: keeps the origin's streams relayed while local
    peers are here."""

    def __init__(self, edges: EdgeRooms, name: str, origin: NodeInfo) -> None:
        self.edges = edges
        self.name = name
        self.origin = origin
        self.relays: dict[str, Relay] = {}  # origin stream id ->
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def _call(self, action: str, body: dict[str, Any]) -> Any:
        url = f"{self.origin.url}{ROOM_PATH.format(room=self.name)}/{action}"
        headers = {TOKEN_HEADER: nodetoken.sign(self.edges.key, self.edges.node_id)}
        async with self.edges.http.post(url, json=body, headers=headers) as resp:
            if resp.status == 204:
                return None
            try:
                payload = await resp.json(content_type=None)
            except ValueError:
                payload = None
            if not isinstance(payload, dict):
                raise SfuError("internal", f"origin {self.origin.id}: answered {resp.status}")
            if resp.status in (401, 403) or (
                resp.status == 404 and payload.get("error", {}).get("code") == "no_room"
            ):
                raise OriginGone(f"{self.origin.id}: {resp.status} {payload}")
            if resp.status >= 400:
                error = payload.get("error", {})
                raise SfuError(
                    "internal", f"origin {self.origin.id}: {error.get('message', resp.status)}"
                )
            return payload

    def room(self) -> Room | None:
        room = self.edges.sfu.get_room(self.name)
        if room is None or room.closed or room.origin != self.origin.id:
            return None
        return room

    async def run(self) -> None:
        failures = 0
        idle_since = time.monotonic()
        next_sync = idle_since
        try:
            while (room := self.room()) is not None:
                now = time.monotonic()
                if any(not p.relay for p in room.peers.values()):
                    idle_since = now
                elif now - idle_since >= IDLE_S:
                    break
                try:
                    if now >= next_sync:
                        next_sync = now + SYNC_S
                        listing = StreamsOut.model_validate(await self._call("streams", {}))
                        await self._sync(room, listing.streams)
                    await self._send_views(room)
                    failures = 0
                except OriginGone:
                    log.info("cascade %s: origin %s dropped the room", self.name, self.origin.id)
                    break
                except Exception as exc:  # unreachable, slow or odd: a few times is enough
                    failures += 1
                    log.warning("cascade %s: origin %s: %r", self.name, self.origin.id, exc)
                    if failures >= MAX_FAILURES:
                        break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), VIEW_S)
                    break
        finally:
            await self._end()

    async def _sync(self, room: Room, streams: list[StreamOut]) -> None:
        live = {s.id: s for s in streams}
        for stream_id, relay in list(self.relays.items()):
            if stream_id not in live or relay.up.closed:
                del self.relays[stream_id]
                await relay.up.close("stream ended")
        for stream in streams:
            if stream.id not in self.relays:
                try:
                    await self._relay(room, stream)
                except (OriginGone, aiohttp.ClientError, TimeoutError, SfuError) as exc:
                    log.warning("cascade %s: stream %s not relayed: %r", self.name, stream.id, exc)
        for peer in list(room.peers.values()):
            if peer.relay:
                peer.touch()
                if not peer.connections:  # its streams ended on the origin
                    await peer.leave("stream ended")

    async def _relay(self, room: Room, stream: StreamOut) -> None:
        peer: Peer | None = room.peers.get(stream.peer_id)
        if peer is None:
            peer = room.join(stream.peer_id, stream.display, relay=True)
        elif not peer.relay:
            return  # (a local peer of the same id: cannot be)
        offer = await self._call("subscribe", {"stream_id": stream.id})
        subscription_id = str(offer["subscription_id"])
        try:
            up = await peer.publish(str(offer["sdp"]), label=stream.label)
        except SfuError:
            with contextlib.suppress(Exception):
                await self._call("close", {"subscription_id": subscription_id})
            raise
        self.relays[stream.id] = Relay(stream, up, subscription_id)
        try:
            await self._call("answer", {"subscription_id": subscription_id, "sdp": up.answer_sdp})
        except BaseException:
            self.relays.pop(stream.id, None)
            await up.close("relay refused")
            raise

    async def _send_views(self, room: Room) -> None:
        """Merged layer needs: the origin's choice of simulcast layer for the relay
        covers the largest view of the edge's subscribers, and a video none of them
        shows does not cross."""
        for relay in list(self.relays.values()):
            for track in relay.up.tracks:
                if track.kind != "video":
                    continue
                view = room.view_needed(relay.up.id, track.id) or NOT_SHOWN
                origin_track = next((t.id for t in relay.stream.tracks if t.kind == "video"), None)
                if origin_track is None or relay.views.get(origin_track) == view:
                    continue
                width, height, visible = view
                await self._call(
                    "view",
                    {
                        "subscription_id": relay.subscription_id,
                        "track_id": origin_track,
                        "width": width,
                        "height": height,
                        "visible": visible,
                    },
                )
                relay.views[origin_track] = view

    async def _end(self) -> None:
        if self.edges.rooms.get(self.name) is self:
            del self.edges.rooms[self.name]
        room = self.edges.sfu.get_room(self.name)
        if room is not None and room.origin == self.origin.id:
            for peer in [p for p in room.peers.values() if p.relay]:
                await peer.leave("cascade ended")
            if self.name not in self.edges.rooms:  # (no new cascade took the room meanwhile)
                room.origin = None
        self.relays.clear()
        with contextlib.suppress(Exception):
            await self._call("leave", {})
        log.info("cascade %s from %s ended", self.name, self.origin.id)


class EdgeRooms:
    """This node's cascades (as an edge), by room name."""

    def __init__(self, app: web.Application, http: aiohttp.ClientSession) -> None:
        self.sfu = app[SFU_KEY]
        self.node_id = app[NODES].id
        self.key = node_key(app)
        self.http = http
        self.rooms: dict[str, EdgeRoom] = {}

    def serve(self, name: str, origin: NodeInfo) -> bool:
        """Serve room ``name`` here, relayed from ``origin``; False if this node holds a
        room of that name of its own (or relayed from another node)."""
        edge = self.rooms.get(name)
        if edge is not None and edge.origin.id == origin.id and not edge.stopping.is_set():
            return True
        room = self.sfu.room(name)
        if room.origin is None and room.peers:
            return False
        if room.origin is not None and room.origin != origin.id:
            return False
        room.origin = origin.id
        edge = EdgeRoom(self, name, origin)
        self.rooms[name] = edge
        edge.task = asyncio.create_task(edge.run(), name=f"vtp-cascade-{name}")
        return True

    async def close(self) -> None:
        edges = list(self.rooms.values())
        for edge in edges:
            edge.stopping.set()
        tasks = [e.task for e in edges if e.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=10)


EDGE_ROOMS = web.AppKey("cascade_edge_rooms", EdgeRooms)


async def edge_rooms_ctx(app: web.Application) -> AsyncIterator[None]:
    """This node's cascades, when it is part of a cluster (after the cluster context: it
    needs the registry)."""
    if not app[CONFIG].cluster or NODES not in app:
        yield
        return
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        edges = EdgeRooms(app, http)
        app[EDGE_ROOMS] = edges
        try:
            yield
        finally:
            await edges.close()
