"""WHIP ingest (RFC 9725) into an SFU room: OBS, GStreamer or a browser publish with one
HTTP POST.

    POST    /api/v1/whip/{room}              offer (application/sdp) -> 201 answer,
                                             Location, ETag, Link (ICE servers)
    PATCH   /api/v1/whip/{room}/{resource}   trickle ICE (application/trickle-ice-sdpfrag)
                                             -> 204; ICE restart -> 422 (not supported)
    DELETE  /api/v1/whip/{room}/{resource}   end the session -> 200
    OPTIONS on both                          CORS preflight -> 204

Authentication is the ``Authorization: Bearer <access JWT>`` header, checked by the auth
middleware like every /api route; the resource may be patched or deleted only by the
user who created it (or an admin). Every WHIP session is an SFU peer of its own with one
publication; its stream is announced to the room like any other. Errors are JSON
envelopes; SDP bodies are ``application/sdp``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

from vtp.api.access import Handler, authenticated, principal_of, public
from vtp.api.endpoint import endpoint
from vtp.api.errors import ApiError, error_response, forbidden, not_found
from vtp.api.middleware import bearer_token
from vtp.appkeys import SFU_KEY
from vtp.sfu import SfuError, events
from vtp.signalling import quotas, rights
from vtp.signalling.access import valid_room_name
from vtp.signalling.members import MEMBERS, Member, MemberJoined, Sink
from vtp.signalling.messages import MAX_SDP_CHARS
from vtp.signalling.refusals import sfu_api_error
from vtp.signalling.websocket import join_room

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

WHIP_PREFIX = "/api/v1/whip"
SDP_TYPE = "application/sdp"
SDPFRAG_TYPE = "application/trickle-ice-sdpfrag"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Patch",
    "Access-Control-Max-Age": "86400",
}


def with_cors(handler: Handler) -> Handler:
    """CORS headers on every response of a WHIP/WHEP handler, errors included."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except ApiError as exc:
            response = error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
        response.headers.update(CORS_HEADERS)
        return response

    return wrapper


def leave_when(member: Member, ends: Callable[[events.Event | MemberJoined], bool]) -> Sink:
    """A sink for an HTTP session's member: its peer leaves when ``ends(event)``."""

    def sink(event: events.Event | MemberJoined) -> None:
        if ends(event) and not member.peer.left:
            member.peer.room.sfu.spawn(member.peer.leave("stream ended"))

    return sink


def room_from(request: web.Request) -> str:
    room = request.match_info["room"]
    if not valid_room_name(room):
        raise ApiError(400, "validation_error", "invalid room name")
    return room


async def read_sdp(request: web.Request, content_type: str = SDP_TYPE) -> str:
    if request.content_type != content_type:
        raise ApiError(415, "unsupported_media_type", f"send the body as {content_type}")
    raw = await request.read()
    if len(raw) > MAX_SDP_CHARS:
        raise ApiError(413, "payload_too_large", f"SDP larger than {MAX_SDP_CHARS} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_sdp", "SDP is not UTF-8") from None


def ice_server_links(servers: list[dict[str, object]]) -> list[str]:
    """RFC 9725 section 4.6 Link headers for the RTCIceServer dictionaries."""
    links: list[str] = []
    for server in servers:
        urls = server.get("urls")
        for url in urls if isinstance(urls, list) else [urls]:
            link = f'<{url}>; rel="ice-server"'
            if "username" in server:
                link += (
                    f'; username="{server["username"]}"; credential="{server["credential"]}"'
                    '; credential-type="password"'
                )
            links.append(link)
    return links


def first_ice_ufrag(sdp: str) -> str | None:
    for line in sdp.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line[len("a=ice-ufrag:") :].strip()
    return None


@dataclass(frozen=True, slots=True)
class SdpFragCandidate:
    candidate: str | None  # "candidate:..." or None for end-of-candidates
    sdp_mid: str | None
    sdp_mline_index: int | None


def parse_sdpfrag(text: str) -> tuple[str | None, list[SdpFragCandidate]]:
    """The ICE ufrag and candidates of an RFC 8840 trickle-ice-sdpfrag body."""
    ufrag: str | None = None
    mid: str | None = None
    index = -1
    found: list[SdpFragCandidate] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("a=ice-ufrag:"):
            ufrag = line[len("a=ice-ufrag:") :].strip()
        elif line.startswith("m="):
            index += 1
            mid = None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:") :].strip()
        elif line.startswith("a=candidate:"):
            found.append(SdpFragCandidate(line[2:], mid, index if index >= 0 else 0))
        elif line == "a=end-of-candidates":
            found.append(SdpFragCandidate(None, mid, index if index >= 0 else 0))
        elif not (len(line) > 2 and line[1] == "=" and line[0].isalpha()):
            raise ApiError(400, "bad_sdp", f"malformed sdpfrag line: {line[:40]!r}")
    return ufrag, found


def resource_url(prefix: str, room: str, member: Member) -> str:
    return f"{prefix}/{room}/{member.peer.id}"


def own_session(request: web.Request, via: str) -> Member:
    principal = principal_of(request)
    room = room_from(request)
    member = request.app[MEMBERS].get(room, request.match_info["resource"])
    if member is None or member.via != via:
        raise not_found("no such session")
    if member.user_id != principal.user_id and not principal.has_role("admin"):
        raise forbidden("this session belongs to another user")
    return member


@routes.route("OPTIONS", WHIP_PREFIX + "/{room}")
@public
@with_cors
async def whip_options(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Accept-Post": SDP_TYPE})


@routes.post(WHIP_PREFIX + "/{room}")
@authenticated
@with_cors
@endpoint(media=SDP_TYPE, status=201, errors=(400, 403, 409, 413, 415, 429, 503))
async def whip_publish(request: web.Request) -> web.Response:
    principal = principal_of(request)
    room_name = room_from(request)
    offer = await read_sdp(request)
    grant, display = await join_room(request.app, principal, room_name, path=request.path_qs)
    if not grant.may_publish:
        raise forbidden("your room role may not publish")
    quotas.check_whip(request.app, principal.user_id)
    quotas.check_connection(request.app, principal.user_id)
    sfu = request.app[SFU_KEY]
    try:
        peer = sfu.room(room_name).join(None, display)
    except SfuError as exc:
        raise sfu_api_error(exc) from None
    member = Member(
        room=room_name,
        peer=peer,
        user_id=principal.user_id,
        display=display,
        role=grant.role,
        may_publish=True,
        via="whip",
    )
    request.app[MEMBERS].add(member)
    try:
        pub = await peer.publish(offer, label="whip")
        # The session ends with its publication (connection failed or timed out).
        member.sink = leave_when(
            member, lambda e: isinstance(e, events.StreamRemoved) and e.stream_id == pub.id
        )
        # ...and with the publish right or room access (vtp.signalling.rights).
        rights.watch_http_member(request.app, member, bearer_token(request) or "", grant)
    except SfuError as exc:
        await peer.leave("bad offer")
        raise sfu_api_error(exc) from None
    except BaseException:
        await peer.leave("failed")
        raise
    etag = f'"{pub.id}"'
    member.data.update(connection_id=pub.id, etag=etag, ufrag=first_ice_ufrag(offer) or "")
    headers: CIMultiDict[str] = CIMultiDict()
    headers["Content-Type"] = SDP_TYPE
    headers["Location"] = resource_url(WHIP_PREFIX, room_name, member)
    headers["ETag"] = etag
    headers["Accept-Patch"] = SDPFRAG_TYPE
    for link in ice_server_links(sfu.ice_servers(str(principal.user_id))):
        headers.add("Link", link)
    logger.info("WHIP session %s publishes stream %s in room %s", peer.id, pub.id, room_name)
    return web.Response(status=201, body=pub.answer_sdp.encode(), headers=headers)


async def trickle(request: web.Request, member: Member) -> web.Response:
    """PATCH on a WHIP/WHEP resource: trickle ICE yes, ICE restart no (422)."""
    if_match = request.headers.get("If-Match")
    if if_match == "*":
        raise ApiError(422, "ice_restart_unsupported", "ICE restarts are not supported")
    if if_match is not None and if_match != member.data.get("etag"):
        raise ApiError(412, "precondition_failed", "If-Match does not match the session's ETag")
    fragment = await read_sdp(request, SDPFRAG_TYPE)
    ufrag, candidates = parse_sdpfrag(fragment)
    if ufrag is not None and ufrag != member.data.get("ufrag"):
        raise ApiError(422, "ice_restart_unsupported", "ICE restarts are not supported")
    member.peer.touch()
    for c in candidates:
        try:
            await member.peer.add_ice_candidate(
                member.data["connection_id"], c.candidate, c.sdp_mid, c.sdp_mline_index
            )
        except SfuError as exc:
            raise sfu_api_error(exc) from None
    return web.Response(status=204)


@routes.patch(WHIP_PREFIX + "/{room}/{resource}")
@authenticated
@with_cors
@endpoint(status=204, errors=(400, 403, 404, 409, 412, 413, 415, 422))
async def whip_patch(request: web.Request) -> web.Response:
    return await trickle(request, own_session(request, "whip"))


@routes.delete(WHIP_PREFIX + "/{room}/{resource}")
@authenticated
@with_cors
@endpoint(media=None, errors=(400, 403, 404))  # 200, no body (WHIP/WHEP)
async def whip_delete(request: web.Request) -> web.Response:
    member = own_session(request, "whip")
    await member.peer.leave("whip session deleted")
    return web.Response(status=200)


@routes.route("OPTIONS", WHIP_PREFIX + "/{room}/{resource}")
@public
@with_cors
async def whip_resource_options(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Accept-Patch": SDPFRAG_TYPE})
