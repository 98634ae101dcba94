"""WHEP egress (draft-ietf-wish-whep): watch a stream of a room with one HTTP POST.

    POST    /api/v1/whep/{room}/{stream_id}  viewer's offer (recvonly, application/sdp)
                                             -> 201 answer, Location, ETag, Link
    POST    /api/v1/whep/{room}              the same, for the room's first stream
    PATCH   /api/v1/whep/{room}/sessions/{resource}   trickle ICE -> 204; restart -> 422
    DELETE  /api/v1/whep/{room}/sessions/{resource}   end the session -> 200
    OPTIONS on each of these                 CORS preflight -> 204

Authentication and errors as for WHIP (:mod:`vtp.signalling.whip`). Each WHEP session is an SFU
peer of its own holding one subscription; it ends with the stream it watches.

WHEP has the viewer offer and the server answer: :meth:`vtp.sfu.peer.Peer.subscribe_answer`.
"""

from __future__ import annotations

import logging

from aiohttp import web
from multidict import CIMultiDict

from vtp.api.access import authenticated, principal_of, public
from vtp.api.endpoint import endpoint
from vtp.api.errors import forbidden, not_found
from vtp.api.middleware import bearer_token
from vtp.appkeys import SFU_KEY
from vtp.sfu import SfuError, events
from vtp.signalling import quotas, rights
from vtp.signalling.members import MEMBERS, Member
from vtp.signalling.refusals import sfu_api_error
from vtp.signalling.websocket import join_room
from vtp.signalling.whip import (
    SDP_TYPE,
    SDPFRAG_TYPE,
    first_ice_ufrag,
    ice_server_links,
    leave_when,
    own_session,
    read_sdp,
    room_from,
    trickle,
    with_cors,
)

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

WHEP_PREFIX = "/api/v1/whep"


@routes.route("OPTIONS", WHEP_PREFIX + "/{room}")
@routes.route("OPTIONS", WHEP_PREFIX + "/{room}/{stream_id}")
@public
@with_cors
async def whep_room_options(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Accept-Post": SDP_TYPE})


@routes.route("OPTIONS", WHEP_PREFIX + "/{room}/sessions/{resource}")
@public
@with_cors
async def whep_options(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Accept-Post": SDP_TYPE, "Accept-Patch": SDPFRAG_TYPE})


async def _watch(request: web.Request, stream_id: str | None) -> web.Response:
    principal = principal_of(request)
    room_name = room_from(request)
    offer = await read_sdp(request)
    grant, display = await join_room(request.app, principal, room_name, path=request.path_qs)
    if not grant.may_subscribe:
        raise forbidden("your room role may not watch")
    room = request.app[SFU_KEY].get_room(room_name)
    streams = room.streams() if room is not None and not room.closed else []
    if stream_id is None:
        if not streams:
            raise not_found(f"nothing is published in room {room_name!r}")
        stream_id = streams[0].id
    if room is None or all(s.id != stream_id for s in streams):
        raise not_found(f"no stream {stream_id!r} in room {room_name!r}")
    quotas.check_connection(request.app, principal.user_id)
    try:
        peer = room.join(None, display)
    except SfuError as exc:
        raise sfu_api_error(exc) from None
    member = Member(
        room=room_name,
        peer=peer,
        user_id=principal.user_id,
        display=display,
        role=grant.role,
        may_publish=False,
        via="whep",
    )
    # The session ends with its subscription (stream gone, connection failed).
    member.sink = leave_when(
        member, lambda e: isinstance(e, events.SubscriptionClosed) and e.peer_id == peer.id
    )
    request.app[MEMBERS].add(member)
    # ...and with the right to be in the room (vtp.signalling.rights).
    rights.watch_http_member(request.app, member, bearer_token(request) or "", grant)
    try:
        sub = await peer.subscribe_answer(stream_id, offer)
    except SfuError as exc:
        await peer.leave("bad offer")
        raise sfu_api_error(exc) from None
    except BaseException:
        await peer.leave("failed")
        raise
    etag = f'"{sub.id}"'
    member.data.update(connection_id=sub.id, etag=etag, ufrag=first_ice_ufrag(offer) or "")
    headers: CIMultiDict[str] = CIMultiDict()
    headers["Content-Type"] = SDP_TYPE
    headers["Location"] = f"{WHEP_PREFIX}/{room_name}/sessions/{peer.id}"
    headers["ETag"] = etag
    headers["Accept-Patch"] = SDPFRAG_TYPE
    for link in ice_server_links(request.app[SFU_KEY].ice_servers(str(principal.user_id))):
        headers.add("Link", link)
    logger.info("WHEP session %s watches stream %s in room %s", peer.id, stream_id, room_name)
    return web.Response(status=201, body=sub.answer_sdp.encode(), headers=headers)


@routes.post(WHEP_PREFIX + "/{room}")
@authenticated
@with_cors
@endpoint(media=SDP_TYPE, status=201, errors=(400, 403, 404, 409, 413, 415, 429, 503))
async def whep_first_stream(request: web.Request) -> web.Response:
    return await _watch(request, None)


@routes.post(WHEP_PREFIX + "/{room}/{stream_id}")
@authenticated
@with_cors
@endpoint(media=SDP_TYPE, status=201, errors=(400, 403, 404, 409, 413, 415, 429, 503))
async def whep_stream(request: web.Request) -> web.Response:
    return await _watch(request, request.match_info["stream_id"])


@routes.patch(WHEP_PREFIX + "/{room}/sessions/{resource}")
@authenticated
@with_cors
@endpoint(status=204, errors=(400, 403, 404, 409, 412, 413, 415, 422))
async def whep_patch(request: web.Request) -> web.Response:
    return await trickle(request, own_session(request, "whep"))


@routes.delete(WHEP_PREFIX + "/{room}/sessions/{resource}")
@authenticated
@with_cors
@endpoint(media=None, errors=(400, 403, 404))  # 200, no body (WHIP/WHEP)
async def whep_delete(request: web.Request) -> web.Response:
    member = own_session(request, "whep")
    await member.peer.leave("whep session deleted")
    return web.Response(status=200)


__all__ = ["routes"]
