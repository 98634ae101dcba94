"""Where a room is served: on the node the cluster placed it on (:mod:`vtp.cluster`).

Every way into a room (:func:`vtp.signalling.websocket.join_room`) and the opening of a
live session's room ask here first, when the node is part of a cluster (``VTP_CLUSTER``,
set for each worker of ``--workers``); a node on its own serves every room itself. A
room placed on another node is not opened a second time here: :class:`RoomElsewhere`
names that node, and the way in decides.

* the signalling WebSocket relays the socket to the room's node
  (:mod:`vtp.channel.relay`: any node is a door; the media goes to the room's node).
  Only a socket relayed already, joining a room on a third node, gets an ``error``
  ``room_elsewhere`` whose ``details`` hold ``node_id``, ``node_url`` and ``url`` (the
  signalling WebSocket on that node). When the room's node is loaded past
  ``VTP_CASCADE_PEERS``, a newcomer is served on this node instead, through a cascade
  from that node (:func:`cascade_here`, :mod:`vtp.signalling.cascade`);
* HTTP (REST transports, WHIP, WHEP, recording control), where a relay would hold a
  request per call and WHIP/WHEP clients follow redirects: ``307 Temporary Redirect``
  with ``Location`` the same request on the room's node, and the JSON error
  ``room_elsewhere``;
* the classroom live channel (:mod:`vtp.web.live`): ``room_elsewhere`` and close 4307.

A draining node (SIGTERM, :mod:`vtp.drain`) opens no new room: placement chooses another
node (with none: ``503 no_node``), and a node on its own refuses rooms not already open.
"""

from __future__ import annotations

from aiohttp import web

from vtp.api.errors import ApiError
from vtp.appkeys import CONFIG, NODES, PLACEMENT, SFU_KEY
from vtp.cluster.nodes import NodeInfo
from vtp.cluster.placement import NoLiveNode
from vtp.signalling.cascade import EDGE_ROOMS


class RoomElsewhere(ApiError):
    def __init__(self, room: str, node: NodeInfo, path: str) -> None:
        url = node.url + path
        super().__init__(
            307,
            "room_elsewhere",
            f"room {room!r} is served by node {node.id}: connect to {node.url}",
            {"node_id": node.id, "node_url": node.url, "url": url},
            {"Location": url},
        )
        self.node = node


async def place_room(app: web.Application, room: str) -> NodeInfo | None:
    """The node holding ``room`` (placing it now if it is nowhere), None if this one."""
    placement = app.get(PLACEMENT)
    if placement is None or not app[CONFIG].cluster:
        # not part of a cluster (or built without the cluster context): every room a
        # client asks this process for is served here, as on a single node
        _refuse_new_room_while_draining(app, room)
        return None
    try:
        node = await placement.place(room, region=app[CONFIG].region or None)
    except NoLiveNode as exc:
        raise ApiError(503, "no_node", str(exc)) from None
    return None if node.id == app[NODES].id else node


def _refuse_new_room_while_draining(app: web.Application, room: str) -> None:
    registry = app.get(NODES)
    sfu = app.get(SFU_KEY)
    draining = registry is not None and registry.me.draining
    if draining and sfu is not None and sfu.get_room(room) is None:
        raise ApiError(503, "no_node", "this server is shutting down: it opens no new room")


async def ensure_here(
    app: web.Application, room: str, path: str, *, place: bool = True, cascade: bool = False
) -> None:
    """Return if ``room`` is served by this node; else raise :class:`RoomElsewhere`
    naming the node (``path``: the same request there). ``place=False``: only a room
    placed on a live node elsewhere is elsewhere (a request that must not open it).
    ``cascade``: the caller may be served here through a cascade (:func:`cascade_here`)."""
    if place:
        node = await place_room(app, room)
    else:
        node = await _owner_elsewhere(app, room)
    if node is not None and not (cascade and cascade_here(app, room, node)):
        raise RoomElsewhere(room, node, path)


def cascade_here(app: web.Application, room: str, origin: NodeInfo) -> bool:
    """Serve a newcomer to ``room``, which ``origin`` holds, on this node through a
    cascade (:mod:`vtp.signalling.cascade`)? Yes once the origin has
    ``VTP_CASCADE_PEERS`` peers (as of its last heartbeat); the relay is then started
    (or already runs) before the caller joins this node's copy of the room."""
    threshold = app[CONFIG].cascade_peers
    edges = app.get(EDGE_ROOMS)
    if threshold <= 0 or edges is None or origin.peers < threshold:
        return False
    return edges.serve(room, origin)


async def _owner_elsewhere(app: web.Application, room: str) -> NodeInfo | None:
    placement = app.get(PLACEMENT)
    if placement is None or not app[CONFIG].cluster:
        return None
    owner = await placement.owner(room)
    if owner is None or owner == app[NODES].id:
        return None
    return await app[NODES].node(owner)
