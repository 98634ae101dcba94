"""File uploads into the object store: size-limited reads, safe names, sniffed types.

An upload is the raw request body (any Content-Type) with the file name in the
``filename`` query parameter. The stored content type is sniffed from the bytes, never
taken from the client, and must agree with the file name's extension.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import unicodedata
import uuid
from typing import Any

from aiohttp import web
from pydantic import Field

from vtp.api.domain_schema import Body
from vtp.api.errors import ApiError
from vtp.api.query import parse_query
from vtp.storage import ObjectNotFound, ObjectStore, StorageError

log = logging.getLogger(__name__)

# A hard ceiling whatever an assignment allows (the DB default is 10 MiB).
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_FILES = 10
_CHUNK = 64 * 1024

_ZIP = "application/zip"
_TEXT = "text/plain"
# extension -> the sniffed type its bytes must have
EXPECTED: dict[str, str] = {
    "pdf": "application/pdf",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "zip": _ZIP,
    "docx": _ZIP,
    "xlsx": _ZIP,
    "pptx": _ZIP,
    "odt": _ZIP,
    "ods": _ZIP,
    "odp": _ZIP,
    "txt": _TEXT,
    "md": _TEXT,
    "csv": _TEXT,
    "py": _TEXT,
    "java": _TEXT,
    "c": _TEXT,
    "cpp": _TEXT,
    "js": _TEXT,
    "html": _TEXT,
    "json": _TEXT,
    "mp4": "video/mp4",
    "mp3": "audio/mpeg",
    "webm": "video/webm",
}
# Served with the specific type; plain-text families are served as text/plain.
_OFFICE = {
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odp": "application/vnd.oasis.opendocument.presentation",
}


class UploadQuery(Body):
    filename: str = Field(min_length=1, max_length=200)


def sniff(data: bytes) -> str:
    """The content type the bytes really have (a small magic-number table)."""
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _ZIP
    if data[4:8] == b"ftyp":
        return "video/mp4"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    if data.startswith(b"ID3") or data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    if "\x00" in text:
        return "application/octet-stream"
    return _TEXT


def safe_filename(name: str) -> str:
    name = unicodedata.normalize("NFC", name).strip()
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[\x00-\x1f\x7f\"<>|:*?]", "_", name)
    if name in ("", ".", ".."):
        raise ApiError(
            400,
            "validation_error",
            "query parameters are invalid",
            [{"field": "filename", "message": "not a usable file name"}],
        )
    return name


def extension(name: str) -> str:
    _, dot, ext = name.rpartition(".")
    return ext.lower() if dot else ""


async def read_upload(request: web.Request, max_bytes: int) -> bytes:
    """The raw body, refusing (413) as soon as it exceeds `max_bytes`."""
    limit = min(max_bytes, MAX_UPLOAD_BYTES)
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    if size == 0:
        raise ApiError(400, "empty_file", "the uploaded file is empty")
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, "file_too_large", f"the file is larger than {limit} bytes", {"max_bytes": limit}
    )


def check_file(name: str, data: bytes, allowed: list[str]) -> str:
    """Check the extension against `allowed` (empty: any known type) and the bytes
    against the extension; return the content type to store and serve."""
    ext = extension(name)
    allowed_set = {a.lower().lstrip(".") for a in allowed}
    if (allowed_set and ext not in allowed_set) or ext not in EXPECTED:
        raise ApiError(
            415,
            "file_type_not_allowed",
            f"files of type .{ext or '?'} are not accepted here",
            {"allowed": sorted(allowed_set or EXPECTED)},
        )
    sniffed = sniff(data)
    if sniffed != EXPECTED[ext]:
        raise ApiError(
            415,
            "file_content_mismatch",
            f"the file's content ({sniffed}) does not match its .{ext} extension",
        )
    return _OFFICE.get(ext, sniffed)


async def receive_file(
    request: web.Request, *, max_bytes: int, allowed: list[str]
) -> tuple[dict[str, Any], bytes]:
    """Read and check an upload; returns its metadata (without `key`) and its bytes."""
    query = parse_query(request, UploadQuery)
    name = safe_filename(query.filename)
    data = await read_upload(request, max_bytes)
    content_type = check_file(name, data, allowed)
    meta = {
        "id": str(uuid.uuid4()),
        "name": name,
        "size": len(data),
        "content_type": content_type,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    return meta, data


def public_file(meta: dict[str, Any]) -> dict[str, Any]:
    """File metadata as clients see it (without the object-store key)."""
    return {k: v for k, v in meta.items() if k != "key"}


def download(meta: dict[str, Any], data: bytes) -> web.Response:
    ascii_name = meta["name"].encode("ascii", "replace").decode().replace('"', "_")
    return web.Response(
        body=data,
        content_type=meta["content_type"],
        headers={
            "Content-Disposition": f'attachment; filename="{ascii_name}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


async def store_put(store: ObjectStore, key: str, data: bytes, content_type: str) -> None:
    try:
        await store.put_bytes(key, data, content_type)
    except StorageError as exc:
        raise ApiError(503, "storage_unavailable", "the file store is unavailable") from exc


async def store_get(store: ObjectStore, key: str) -> bytes:
    try:
        return await store.get_bytes(key)
    except ObjectNotFound as exc:
        raise ApiError(404, "not_found", "the file is missing from the store") from exc
    except StorageError as exc:
        raise ApiError(503, "storage_unavailable", "the file store is unavailable") from exc


async def delete_quietly(store: ObjectStore, key: str) -> None:
    """Remove an object that no row refers to any more; a failure is logged, not raised
    (the request's outcome does not depend on it). Shielded from cancellation."""
    try:
        await asyncio.shield(store.delete(key))
    except ObjectNotFound:
        pass
    except (StorageError, asyncio.CancelledError):
        log.warning("could not delete object %s", key)
