"""File uploads into the object store: size-limited reads, safe names, sniffed types.

An upload is the raw request body (any Content-Type) with the file name in the
``filename`` query parameter. The stored content type is sniffed from the bytes, never
taken from the client, and must agree with the file name's extension.

Neither direction holds a file in memory: an upload is spooled to a temporary file in
the state directory (hashed and checked as it arrives) and handed to the store from
there; a download is streamed from the store (from disk with range support when the
store is local).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hashlib
import logging
import os
import re
import tempfile
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import Field

from vtp.api.errors import ApiError
from vtp.api.validation import Body, Out, read_query
from vtp.appkeys import CONFIG, STORE
from vtp.private_files import private_dir
from vtp.storage import ObjectNotFound, ObjectStore, StorageError


# --- answers ---------------------------------------------------------------------------
class FileOut(Out):
    id: str
    name: str
    size: int
    content_type: str
    sha256: str


log = logging.getLogger(__name__)

# A hard ceiling whatever an assignment allows (the DB default is 10 MiB).
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_FILES = 10
_CHUNK = 64 * 1024
_SPOOL_WRITE = 1024 * 1024  # bytes gathered before one write (and hash) in a thread
_HEAD = 512  # what sniffing looks at

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


def sniff(head: bytes, text: bool) -> str:
    """The content type the bytes really have (a magic-number table on the first bytes;
    ``text``: the whole file is UTF-8 without NUL)."""
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _ZIP
    if head[4:8] == b"ftyp":
        return "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    return _TEXT if text else "application/octet-stream"


@dataclass
class Upload:
    """A request body spooled to a temporary file: its size, SHA-256, first bytes and
    whether it is all UTF-8 text. :func:`store_put` consumes it (and its file)."""

    path: Path
    size: int
    sha256: str
    head: bytes
    text: bool

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


class _Spool:
    """Writes, hashes and text-checks a body in blocks (in a worker thread)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.text = True

    def absorb(self, block: bytes) -> None:
        self.digest.update(block)
        if self.text:
            try:
                self.text = "\x00" not in self.decoder.decode(block)
            except UnicodeDecodeError:
                self.text = False
        self.handle.write(block)

    def finish(self) -> None:
        if self.text:
            try:
                self.decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                self.text = False
        self.handle.close()


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


async def read_upload(request: web.Request, max_bytes: int) -> Upload:
    """Spool the raw body to a temporary file, refusing (413) as soon as it exceeds
    `max_bytes`; nothing is left on disk when it is refused."""
    limit = min(max_bytes, MAX_UPLOAD_BYTES)
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    directory = request.app[CONFIG].data_dir / "upload-spool"
    await asyncio.to_thread(private_dir, directory)
    fd, name = await asyncio.to_thread(tempfile.mkstemp, dir=directory, prefix="upload-")
    path = Path(name)
    spool = _Spool(os.fdopen(fd, "wb"))
    upload = Upload(path, 0, "", b"", False)
    head = b""
    size = 0
    pending: list[bytes] = []
    pending_size = 0
    try:
        while True:
            chunk = await request.content.read(_CHUNK)
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                if len(head) < _HEAD:
                    head += chunk[: _HEAD - len(head)]
                pending.append(chunk)
                pending_size += len(chunk)
            if pending and (not chunk or pending_size >= _SPOOL_WRITE):
                await asyncio.to_thread(spool.absorb, b"".join(pending))
                pending, pending_size = [], 0
            if not chunk:
                break
        await asyncio.to_thread(spool.finish)
    except BaseException:
        spool.handle.close()
        upload.discard()  # (a quick unlink of our own file, also when cancelled)
        raise
    upload.size, upload.sha256, upload.head, upload.text = (
        size,
        spool.digest.hexdigest(),
        head,
        spool.text,
    )
    if size == 0:
        upload.discard()
        raise ApiError(400, "empty_file", "the uploaded file is empty")
    return upload


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, "file_too_large", f"the file is larger than {limit} bytes", {"max_bytes": limit}
    )


def check_file(name: str, head: bytes, text: bool, allowed: list[str]) -> str:
    """Check the extension against `allowed` (empty: any known type) and the bytes
    (their first bytes, and whether they are all text) against the extension; return
    the content type to store and serve."""
    ext = extension(name)
    allowed_set = {a.lower().lstrip(".") for a in allowed}
    if (allowed_set and ext not in allowed_set) or ext not in EXPECTED:
        raise ApiError(
            415,
            "file_type_not_allowed",
            f"files of type .{ext or '?'} are not accepted here",
            {"allowed": sorted(allowed_set or EXPECTED)},
        )
    sniffed = sniff(head, text)
    if sniffed != EXPECTED[ext]:
        raise ApiError(
            415,
            "file_content_mismatch",
            f"the file's content ({sniffed}) does not match its .{ext} extension",
        )
    return _OFFICE.get(ext, sniffed)


async def receive_file(
    request: web.Request, *, max_bytes: int, allowed: list[str]
) -> tuple[dict[str, Any], Upload]:
    """Read and check an upload; returns its metadata (without `key`) and the spooled
    file, which :func:`store_put` stores and removes."""
    query = read_query(request, UploadQuery)
    name = safe_filename(query.filename)
    upload = await read_upload(request, max_bytes)
    try:
        content_type = check_file(name, upload.head, upload.text, allowed)
    except BaseException:
        upload.discard()
        raise
    meta = {
        "id": str(uuid.uuid4()),
        "name": name,
        "size": upload.size,
        "content_type": content_type,
        "sha256": upload.sha256,
    }
    return meta, upload


def file_out(meta: dict[str, Any]) -> FileOut:
    """File metadata as clients see it (without the object-store key)."""
    return FileOut.model_validate({k: v for k, v in meta.items() if k != "key"})


async def download(request: web.Request, meta: dict[str, Any]) -> web.StreamResponse:
    """Send a stored file as an attachment, streamed from the store."""
    store = request.app[STORE]
    ascii_name = meta["name"].encode("ascii", "replace").decode().replace('"', "_")
    headers = {
        "Content-Type": meta["content_type"],
        "Content-Disposition": f'attachment; filename="{ascii_name}"',
        "X-Content-Type-Options": "nosniff",
    }
    path = store.local_path(meta["key"])
    if path is not None:
        if not await asyncio.to_thread(path.is_file):
            raise ApiError(404, "not_found", "the file is missing from the store")
        return web.FileResponse(path, headers=headers)  # ranges, sendfile
    async with contextlib.aclosing(store.stream(meta["key"])) as chunks:
        try:
            first = await anext(chunks, b"")
        except ObjectNotFound as exc:
            raise ApiError(404, "not_found", "the file is missing from the store") from exc
        except StorageError as exc:
            raise ApiError(503, "storage_unavailable", "the file store is unavailable") from exc
        response = web.StreamResponse(headers=headers)
        response.content_length = int(meta["size"])
        await response.prepare(request)
        await response.write(first)
        try:
            async for chunk in chunks:
                await response.write(chunk)
        except StorageError:
            # the status is sent: all that is left is to cut the body short
            log.warning("download of %s broke off", meta["key"])
            raise
        await response.write_eof()
    return response


async def store_put(store: ObjectStore, key: str, upload: Upload, content_type: str) -> None:
    """Store a spooled upload under `key` and remove its temporary file."""
    try:
        await store.put_file(key, upload.path, content_type)
    except StorageError as exc:
        raise ApiError(503, "storage_unavailable", "the file store is unavailable") from exc
    finally:
        upload.discard()


async def delete_quietly(store: ObjectStore, key: str) -> None:
    """Remove an object that no row refers to any more; a failure is logged, not raised
    (the request's outcome does not depend on it). Shielded from cancellation."""
    try:
        await asyncio.shield(store.delete(key))
    except ObjectNotFound:
        pass
    except (StorageError, asyncio.CancelledError):
        log.warning("could not delete object %s", key)
