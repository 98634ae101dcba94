"""The one object-store interface the rest of VTP sees."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class StorageError(RuntimeError):
    """The store could not be reached or refused the operation."""


class ObjectNotFound(StorageError):
    pass


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
    async def put_file(self, key: str, path: Path, content_type: str) -> ObjectInfo: ...
    async def get_bytes(self, key: str) -> bytes: ...
    async def stat(self, key: str) -> ObjectInfo: ...
    async def delete(self, key: str) -> None: ...


def check_key(key: str) -> str:
    # Keys become file paths in the local store: refuse anything that could escape it.
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid object key {key!r}")
    return key
