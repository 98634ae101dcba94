"""The one object-store interface the rest of VTP sees."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CHUNK = 1024 * 1024


class StorageError(RuntimeError):
    """The store could not be reached or refused the operation."""


class ObjectNotFound(StorageError):
    pass


class MissingBucket(StorageError):
    """The store answers, but the configured bucket does not exist."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    content_type: str


class ObjectStore(Protocol):
    name: str

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None:
        """Raise StorageError unless the store (and its bucket) is usable."""

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo: ...
    async def put_file(
        self, key: str, path: Path, content_type: str, *, part_size: int | None = None
    ) -> ObjectInfo:
        """Upload a file (in parts of `part_size` bytes where the store has parts)."""

    async def get_bytes(self, key: str) -> bytes: ...
    def stream(self, key: str) -> AsyncGenerator[bytes, None]:
        """The object's bytes in chunks of at most CHUNK, never all in memory. Raises
        ObjectNotFound/StorageError before the first chunk when it cannot start; close
        it (``contextlib.aclosing``) when stopping early."""

    async def stat(self, key: str) -> ObjectInfo: ...
    async def sha256(self, key: str) -> str:
        """SHA-256 (hex) of what the store holds, read as a stream: verifies an upload."""

    async def presign_get(self, key: str, ttl_s: int) -> str | None:
        """A URL a browser may fetch directly for `ttl_s` seconds, or None when the store
        has no such URLs (then the API serves the object itself)."""

    def local_path(self, key: str) -> Path | None:
        """The object's file, for a store on local disk; None otherwise."""

    async def delete(self, key: str) -> None: ...


def check_key(key: str) -> str:
    # Keys become file paths in the local store: refuse anything that could escape it.
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid object key {key!r}")
    return key


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file, read in chunks (blocking: call it in a thread)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
