"""A directory on local disk standing in for S3 when no endpoint is configured."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from pathlib import Path

from vtp.storage.base import ObjectInfo, ObjectNotFound, StorageError, check_key


class LocalObjectStore:
    name = "local-disk"

    def __init__(self, root: Path) -> None:
        self.root = root

    async def start(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        def probe() -> None:
            if not self.root.is_dir() or not os.access(self.root, os.W_OK):
                raise StorageError(f"object directory {self.root} is not writable")

        await asyncio.to_thread(probe)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write(self, key: str, writer: object, content_type: str) -> ObjectInfo:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target then rename, so a reader never sees half an object.
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            if isinstance(writer, bytes):
                tmp.write_bytes(writer)
            else:
                assert isinstance(writer, Path)
                shutil.copyfile(writer, tmp)
            tmp.replace(target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot write {key}: {exc}") from exc
        target.with_name(f".{target.name}.meta").write_text(
            json.dumps({"content_type": content_type})
        )
        return ObjectInfo(key, target.stat().st_size, content_type)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        return await asyncio.to_thread(self._write, key, data, content_type)

    async def put_file(self, key: str, path: Path, content_type: str) -> ObjectInfo:
        return await asyncio.to_thread(self._write, key, path, content_type)

    async def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    async def stat(self, key: str) -> ObjectInfo:
        def read() -> ObjectInfo:
            path = self._path(key)
            try:
                size = path.stat().st_size
            except FileNotFoundError as exc:
                raise ObjectNotFound(key) from exc
            meta = path.with_name(f".{path.name}.meta")
            content_type = "application/octet-stream"
            if meta.exists():
                content_type = json.loads(meta.read_text()).get("content_type", content_type)
            return ObjectInfo(key, size, content_type)

        return await asyncio.to_thread(read)

    async def delete(self, key: str) -> None:
        def remove() -> None:
            path = self._path(key)
            path.unlink(missing_ok=True)
            path.with_name(f".{path.name}.meta").unlink(missing_ok=True)

        await asyncio.to_thread(remove)
