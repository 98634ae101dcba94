"""/api/v1 recording control and playback (the recorder's routes; listing is in
vtp.api.recordings).

* ``POST /api/v1/sessions/{id}/recording/start`` and ``.../recording/stop``: the
  course's teachers and TAs, and admins; 409 when the session is not live, is already
  being recorded (start) or is not being recorded (stop).
* ``GET /api/v1/sessions/{id}/recording``: any course member: is it being recorded?
* ``GET /api/v1/recordings/{id}/playback``: course members only (403 for anyone else):
  links to the recording's files - presigned S3 URLs, or signed links to
  ``GET /api/v1/recordings/{id}/media/{name}`` (the local-disk store, streamed with
  Range support; the signature stands in for the bearer token a <video> element
  cannot send).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

from aiohttp import web

from vtp.api.access import authenticated, principal_of, public
from vtp.api.course_access import MEMBERS, STAFF, load_course_access
from vtp.api.endpoint import endpoint
from vtp.api.errors import ApiError, conflict, forbidden, not_found
from vtp.api.recordings import RecordingOut, recording_out
from vtp.api.sessions import load_session
from vtp.api.validation import Out, path_uuid
from vtp.appkeys import CONFIG, DB, RECORDER, STORE
from vtp.auth.secret import load_or_create_secret
from vtp.db import recordings as recordings_db
from vtp.recorder.matroska import content_type
from vtp.recorder.service import Recorder
from vtp.recorder.session import MANIFEST
from vtp.recorder.uploader import object_prefix
from vtp.signalling.placement import ensure_here
from vtp.storage import StorageError

routes = web.RouteTableDef()


class RecordingStateOut(Out):
    recording: bool
    recording_id: uuid.UUID | None


class PlaybackFileOut(Out):
    """A file of the recording's manifest (fields an older manifest lacks are null)."""

    name: str
    peer_id: str | None
    label: str | None
    kinds: list[str] | None
    offset_ms: int | float | None
    duration_ms: int | float | None
    size: int | None
    content_type: str
    url: str


class PlaybackOut(Out):
    recording: RecordingOut  # type: ignore[valid-type]
    content_type: str
    expires_in: int
    url: str | None
    files: list[PlaybackFileOut]


_SIGNING_KEY = web.AppKey("recording_media_key", bytes)


def _recorder(request: web.Request) -> Recorder:
    recorder = request.app.get(RECORDER)
    if recorder is None:
        raise ApiError(503, "recorder_unavailable", "recording is not available on this server")
    return recorder


async def _watchable(request: web.Request, recording_id: uuid.UUID) -> Out:
    """The recording, if the caller is a member of its course and it is available."""
    row = await recordings_db.get_with_course(request.app[DB], recording_id)
    if row is None:
        raise not_found("no such recording")
    access = await load_course_access(request.app[DB], principal_of(request), row["course_id"])
    if access is None or not access.is_member:
        raise forbidden("only members of this course may watch its recordings")
    if row["status"] != "available":
        raise conflict("recording_not_available", f"the recording is {row['status']}")
    return recording_out(row, staff=access.is_staff)


@routes.post("/api/v1/sessions/{session_id}/recording/start")
@authenticated
@endpoint(returns=RecordingOut, status=201, errors=(400, 403, 404, 409, 503))
async def start_recording(request: web.Request) -> Out:
    session, access = await load_session(request, STAFF, write=True)
    recorder = _recorder(request)
    if session.status != "live":
        raise conflict("session_not_live", f"the session is {session.status}, not live")
    # the recorder runs beside the room: on another node, 307 there (room_elsewhere)
    await ensure_here(request.app, session.room_name, request.path_qs)
    try:
        recording_id = await recorder.start_recording(session.id, access.user_id)
    except recordings_db.NotLive as exc:
        raise conflict("session_not_live", f"the session is {exc.status}, not live") from exc
    except recordings_db.AlreadyRecording as exc:
        raise conflict("already_recording", "the session is already being recorded") from exc
    except OSError as exc:
        raise ApiError(503, "recorder_unavailable", f"cannot record: {exc}") from exc
    row = await recordings_db.get_with_course(request.app[DB], recording_id)
    assert row is not None
    return recording_out(row, staff=True)


@routes.post("/api/v1/sessions/{session_id}/recording/stop")
@authenticated
@endpoint(returns=RecordingOut, errors=(400, 403, 404, 409, 503))
async def stop_recording(request: web.Request) -> Out:
    session, _ = await load_session(request, STAFF)
    recorder = _recorder(request)
    if recorder.recording_of(session.id) is None:
        # the recording runs on the room's node: 307 there when that is another one
        await ensure_here(request.app, session.room_name, request.path_qs, place=False)
        raise conflict("not_recording", "the session is not being recorded")
    try:
        recording_id = await recorder.stop_recording(session.id, "stopped by staff")
    except KeyError as exc:  # stopped meanwhile
        raise conflict("not_recording", "the session is not being recorded") from exc
    row = await recordings_db.get_with_course(request.app[DB], recording_id)
    assert row is not None
    return recording_out(row, staff=True)


@routes.get("/api/v1/sessions/{session_id}/recording")
@authenticated
@endpoint(returns=RecordingStateOut, errors=(400, 403, 404, 409))
async def recording_state(request: web.Request) -> Out:
    session, _ = await load_session(request, MEMBERS)
    recorder = request.app.get(RECORDER)
    active = recorder.recording_of(session.id) if recorder is not None else None
    return RecordingStateOut(
        recording=active is not None,
        recording_id=active.recording_id if active is not None else None,
    )


# --- playback -------------------------------------------------------------------------------


def _signing_key(request: web.Request) -> bytes:
    key = request.app.get(_SIGNING_KEY)
    if key is None:
        config = request.app[CONFIG]
        secret = (
            config.jwt_secret.get_secret_value()
            if config.jwt_secret
            else load_or_create_secret(config.data_dir / "jwt_secret")
        )
        key = hashlib.sha256(b"vtp-recording-media:" + secret.encode()).digest()
    return key


def _signature(key: bytes, recording_id: uuid.UUID, name: str, expires: int) -> str:
    message = f"{recording_id}/{name}/{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _safe_name(name: str) -> bool:
    return bool(name) and "/" not in name and not name.startswith(".") and name != MANIFEST


@routes.get("/api/v1/recordings/{recording_id}/playback")
@authenticated
@endpoint(returns=PlaybackOut, errors=(400, 403, 404, 409, 503))
async def playback(request: web.Request) -> Out:
    recording_id = path_uuid(request, "recording_id")
    recording = await _watchable(request, recording_id)
    _recorder(request)  # 503 when this server records nothing
    ttl = request.app[CONFIG].recording_url_ttl_s
    prefix = object_prefix(recording_id)
    try:
        manifest = json.loads(await request.app[STORE].get_bytes(f"{prefix}/{MANIFEST}"))
    except (StorageError, ValueError) as exc:
        raise ApiError(503, "store_unavailable", f"cannot read the recording: {exc}") from exc
    key = _signing_key(request)
    expires = int(time.time()) + ttl

    async def url_of(name: str) -> str:
        presigned = await request.app[STORE].presign_get(f"{prefix}/{name}", ttl)
        if presigned is not None:
            return presigned
        signature = _signature(key, recording_id, name, expires)
        return (
            f"/api/v1/recordings/{recording_id}/media/{name}"
            f"?expires={expires}&signature={signature}"
        )

    files = []
    main_url = None
    for entry in manifest.get("files", []):
        name = str(entry.get("name"))
        if not _safe_name(name):
            continue
        url = await url_of(name)
        if name == manifest.get("main"):
            main_url = url
        files.append(
            PlaybackFileOut(
                name=name,
                peer_id=entry.get("peer_id"),
                label=entry.get("label"),
                kinds=entry.get("kinds"),
                offset_ms=entry.get("offset_ms"),
                duration_ms=entry.get("duration_ms"),
                size=entry.get("size"),
                content_type=content_type(name),
                url=url,
            )
        )
    return PlaybackOut(
        recording=recording,
        content_type=content_type(str(manifest.get("main") or "")),
        expires_in=ttl,
        url=main_url or (files[0].url if files else None),
        files=files,
    )


@routes.get("/api/v1/recordings/{recording_id}/media/{name}")
@public
@endpoint(errors=(400, 403, 404, 503))
async def media(request: web.Request) -> web.StreamResponse:
    """A file of a recording in the local-disk store, for a signed link (Range works)."""
    recording_id = path_uuid(request, "recording_id")
    name = request.match_info["name"]
    try:
        expires = int(request.query.get("expires", ""))
    except ValueError as exc:
        raise forbidden("this link is not valid") from exc
    given = request.query.get("signature", "")
    expected = _signature(_signing_key(request), recording_id, name, expires)
    if not _safe_name(name) or not hmac.compare_digest(given, expected):
        raise forbidden("this link is not valid")
    if expires < time.time():
        raise forbidden("this link has expired")
    _recorder(request)  # 503 when this server records nothing
    path = request.app[STORE].local_path(f"{object_prefix(recording_id)}/{name}")
    if path is None or not path.is_file():
        raise not_found("no such file")
    return web.FileResponse(
        path, headers={"Content-Type": content_type(name), "Cache-Control": "private, max-age=60"}
    )


__all__ = ["routes"]
