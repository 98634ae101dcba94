"""What the recorder needs of object storage beyond :class:`vtp.storage.ObjectStore`:
multipart upload with a chosen part size, a streamed SHA-256 of what the store holds
(to verify an upload), and playback links (presigned for S3, a file for the local
store, served by the API with Range support).

S3: a miniopy-async client of the recorder's own, built from the same settings as the
app's store (``vtp.storage.s3`` does not expose presigning or part sizes).
Local disk: the app's :class:`~vtp.storage.local.LocalObjectStore` does the writes;
reads go to its files.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from vtp.config import Config
from vtp.storage import ObjectNotFound, ObjectStore, StorageError
from vtp.storage.local import LocalObjectStore
from vtp.storage.s3 import split_endpoint

CHUNK = 1024 * 1024
_CONNECT_TIMEOUT_S = 10.0
_READ_TIMEOUT_S = 120.0


class MissingBucket(StorageError):
    pass


class RecordingObjects(Protocol):
    name: str

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def upload(self, key: str, path: Path, content_type: str) -> None: ...
    async def stat_size(self, key: str) -> int: ...
    async def sha256(self, key: str) -> str: ...
    async def presign(self, key: str, ttl_s: int) -> str | None:
        """A URL the browser may fetch directly, or None (the API proxies the file)."""

    def local_path(self, key: str) -> Path | None: ...


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class LocalObjects:
    name = "local-disk"

    def __init__(self, store: LocalObjectStore) -> None:
        self.store = store

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def upload(self, key: str, path: Path, content_type: str) -> None:
        await self.store.put_file(key, path, content_type)

    async def stat_size(self, key: str) -> int:
        return (await self.store.stat(key)).size

    async def sha256(self, key: str) -> str:
        path = self.local_path(key)
        try:
            return await asyncio.to_thread(file_sha256, path)
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc

    async def presign(self, key: str, ttl_s: int) -> str | None:
        return None

    def local_path(self, key: str) -> Path:
        return self.store.root / key


def _s3_error(exc: Exception, what: str, bucket: str) -> StorageError:
    code = getattr(exc, "code", None)
    if code == "NoSuchBucket":
        return MissingBucket(f"bucket {bucket!r} does not exist ({what})")
    if code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
        return ObjectNotFound(what)
    return StorageError(f"{what}: {type(exc).__name__}: {exc}")


class S3Objects:
    name = "s3"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.bucket = config.s3_bucket
        self.part_size = config.recording_part_size_mb * 1024 * 1024
        self._client: Any = None

    async def start(self) -> None:
        import aiohttp
        from miniopy_async.api import Minio

        assert self.config.s3_endpoint
        host, secure = split_endpoint(self.config.s3_endpoint, self.config.s3_secure)
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=_CONNECT_TIMEOUT_S,
                sock_connect=_CONNECT_TIMEOUT_S,
                sock_read=_READ_TIMEOUT_S,
            )
        )
        self._client = Minio(
            host,
            access_key=self.config.s3_access_key or None,
            secret_key=self.config.s3_secret_key.get_secret_value() or None,
            region=self.config.s3_region or None,
            secure=secure,
            session=session,
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close_session()

    def _require(self) -> Any:
        if self._client is None:
            raise StorageError("recorder S3 client is not started")
        return self._client

    async def upload(self, key: str, path: Path, content_type: str) -> None:
        client = self._require()
        try:
            await client.fput_object(
                self.bucket,
                key,
                str(path),
                content_type=content_type,
                part_size=self.part_size,
                num_parallel_uploads=2,
            )
        except StorageError:
            raise
        except Exception as exc:
            raise _s3_error(exc, f"upload of {key}", self.bucket) from exc

    async def stat_size(self, key: str) -> int:
        client = self._require()
        try:
            result = await client.stat_object(self.bucket, key)
        except Exception as exc:
            raise _s3_error(exc, f"stat of {key}", self.bucket) from exc
        return int(result.size)

    async def sha256(self, key: str) -> str:
        client = self._require()
        digest = hashlib.sha256()
        try:
            response = await client.get_object(self.bucket, key)
            try:
                async for chunk in response.content.iter_chunked(CHUNK):
                    digest.update(chunk)
            finally:
                response.release()
        except Exception as exc:
            raise _s3_error(exc, f"download of {key}", self.bucket) from exc
        return digest.hexdigest()

    async def presign(self, key: str, ttl_s: int) -> str | None:
        client = self._require()
        url: str = await client.presigned_get_object(
            self.bucket, key, expires=timedelta(seconds=ttl_s)
        )
        return url

    def local_path(self, key: str) -> Path | None:
        return None


def recording_objects(config: Config, store: ObjectStore) -> RecordingObjects:
    if isinstance(store, LocalObjectStore):
        return LocalObjects(store)
    if config.s3_endpoint:
        return S3Objects(config)
    raise StorageError(f"the recorder does not support the {store.name!r} object store")
