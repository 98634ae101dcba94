"""/api/v1/admin/nodes and /api/v1/admin/rooms/{room}: the cluster, for operators (admins).

* ``GET /api/v1/admin/nodes`` - every live node of the registry (:mod:`vtp.cluster.nodes`)
  with its URL, media address, region and load (CPU share of a core, peers, forwarded
  packets/s, SFU rooms open, rooms placed on it), and which one answered;
* ``GET /api/v1/admin/rooms/{room}`` - the node a room is placed on (``null``: nowhere
  alive; the next opener places it). Asking does not place the room.
"""

from __future__ import annotations

from aiohttp import web

from vtp.api.access import require_roles
from vtp.api.endpoint import endpoint
from vtp.api.errors import ApiError
from vtp.api.validation import Out
from vtp.appkeys import NODES, PLACEMENT
from vtp.cluster.nodes import NodeInfo
from vtp.signalling.access import valid_room_name

routes = web.RouteTableDef()


class NodesOut(Out):
    node_id: str  # the node that answered
    nodes: list[NodeInfo]


class RoomNodeOut(Out):
    room: str
    node: NodeInfo | None


def _in_full(node: NodeInfo) -> NodeInfo:
    """The node with every field set: answers leave unset fields out, and a node's JSON
    in Redis may lack those with defaults (an older node's, or ones left at the default)."""
    return NodeInfo.model_validate(node.model_dump())


@routes.get("/api/v1/admin/nodes")
@require_roles("admin")
@endpoint(returns=NodesOut)
async def list_nodes(request: web.Request) -> NodesOut:
    """The live nodes of the cluster, oldest first, with their load."""
    registry = request.app[NODES]
    nodes = sorted(await registry.nodes(), key=lambda n: (n.started_at, n.id))
    return NodesOut(node_id=registry.id, nodes=[_in_full(n) for n in nodes])


@routes.get("/api/v1/admin/rooms/{room}")
@require_roles("admin")
@endpoint(returns=RoomNodeOut, errors=(400,))
async def room_node(request: web.Request) -> RoomNodeOut:
    """Where a room lives."""
    room = request.match_info["room"]
    if not valid_room_name(room):
        raise ApiError(
            400,
            "validation_error",
            "invalid room name",
            [{"field": "room", "message": "letters, digits, dot, dash, underscore; 1-64"}],
        )
    owner = await request.app[PLACEMENT].owner(room)
    node = await request.app[NODES].node(owner) if owner is not None else None
    return RoomNodeOut(room=room, node=_in_full(node) if node is not None else None)
