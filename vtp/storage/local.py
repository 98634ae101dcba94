"""A directory on local disk standing in for S3 when no endpoint is configured.

Each object is a file at `<root>/<key>`; its content type lives beside it in a hidden
`.<name>.meta` file. Writes go to a temporary file that is then renamed, so a reader
sees the old object or the new one, never half of one.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncGenerator
from pathlib import Path

from vtp.private_files import copy_private, private_dir, write_private
from vtp.storage.base import (
    CHUNK,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    check_key,
    file_sha256,
)

_DEFAULT_CONTENT_TYPE = "application/octet-stream"


def _meta_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.meta")


def _staged(target: Path, fill: bytes | Path) -> Path:
    """Write `fill` to a temporary file beside `target` and return its path."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        if isinstance(fill, bytes):
            write_private(tmp, fill)
        else:
            copy_private(fill, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _replace_atomically(target: Path, fill: bytes) -> None:
    tmp = _staged(target, fill)
    try:
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class LocalObjectStore:
    name = "local-disk"

    def __init__(self, root: Path) -> None:
        self.root = root

    async def start(self) -> None:
        try:
            await asyncio.to_thread(private_dir, self.root)
        except OSError as exc:
            raise StorageError(f"cannot create object directory {self.root}: {exc}") from exc

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        def probe() -> None:
            if not self.root.is_dir() or not os.access(self.root, os.W_OK | os.X_OK):
                raise StorageError(f"object directory {self.root} is not writable")

        await asyncio.to_thread(probe)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write(self, key: str, source: bytes | Path, content_type: str) -> ObjectInfo:
        target = self._path(key)
        try:
            private_dir(target.parent)
            # Stage the data first: an unreadable source changes nothing. Then the
            # content type, then the data, so a reader that sees the new data also
            # sees its type.
            staged = _staged(target, source)
            try:
                meta = json.dumps({"content_type": content_type}).encode()
                _replace_atomically(_meta_path(target), meta)
                staged.replace(target)
            except BaseException:
                staged.unlink(missing_ok=True)
                raise
            size = target.stat().st_size
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc}") from exc
        return ObjectInfo(key, size, content_type)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        check_key(key)
        return await asyncio.to_thread(self._write, key, bytes(data), content_type)

    async def put_file(
        self, key: str, path: Path, content_type: str, *, part_size: int | None = None
    ) -> ObjectInfo:
        check_key(key)
        return await asyncio.to_thread(self._write, key, Path(path), content_type)

    async def get_bytes(self, key: str) -> bytes:
        path = self._path(key)

        def read() -> bytes:
            try:
                return path.read_bytes()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
                raise ObjectNotFound(key) from exc
            except OSError as exc:
                raise StorageError(f"cannot read {key}: {exc}") from exc

        return await asyncio.to_thread(read)

    async def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)

        def read() -> ObjectInfo:
            try:
                if not path.is_file():
                    raise ObjectNotFound(key)
                size = path.stat().st_size
            except (FileNotFoundError, NotADirectoryError) as exc:
                raise ObjectNotFound(key) from exc
            except OSError as exc:
                raise StorageError(f"cannot stat {key}: {exc}") from exc
            content_type = _DEFAULT_CONTENT_TYPE
            try:
                meta = json.loads(_meta_path(path).read_bytes())
                content_type = str(meta.get("content_type") or content_type)
            except (OSError, ValueError, AttributeError):
                pass  # no (readable) metadata: the object is still there
            return ObjectInfo(key, size, content_type)

        return await asyncio.to_thread(read)

    async def stream(self, key: str) -> AsyncGenerator[bytes, None]:
        path = self._path(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc
        try:
            while True:
                try:
                    chunk = await asyncio.to_thread(handle.read, CHUNK)
                except OSError as exc:
                    raise StorageError(f"cannot read {key}: {exc}") from exc
                if not chunk:
                    return
                yield chunk
        finally:
            handle.close()

    async def sha256(self, key: str) -> str:
        path = self._path(key)

        def digest() -> str:
            try:
                return file_sha256(path)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
                raise ObjectNotFound(key) from exc
            except OSError as exc:
                raise StorageError(f"cannot read {key}: {exc}") from exc

        return await asyncio.to_thread(digest)

    async def presign_get(self, key: str, ttl_s: int) -> str | None:
        return None  # files on disk have no URL of their own: the API serves them

    def local_path(self, key: str) -> Path:
        return self._path(key)

    async def delete(self, key: str) -> None:
        """Remove an object; removing one that does not exist is not an error."""
        path = self._path(key)

        def remove() -> None:
            try:
                if path.is_dir():
                    return  # a "directory" of other keys, not an object
                path.unlink(missing_ok=True)
                _meta_path(path).unlink(missing_ok=True)
            except NotADirectoryError:
                return
            except OSError as exc:
                raise StorageError(f"cannot delete {key}: {exc}") from exc

        await asyncio.to_thread(remove)
