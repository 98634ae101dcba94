"""S3-compatible object storage (MinIO, SeaweedFS, AWS) through miniopy-async."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
from collections.abc import AsyncGenerator
from datetime import timedelta
from pathlib import Path
from typing import Any

from vtp.storage.base import (
    CHUNK,
    MissingBucket,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    check_key,
)

log = logging.getLogger(__name__)

_NOT_FOUND = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}
# miniopy-async's own session waits 5 minutes to connect; a store that does not answer
# should fail a request (and /ready) in seconds instead.
_CONNECT_TIMEOUT_S = 10.0
_READ_TIMEOUT_S = 120.0


def s3_error(exc: Exception, what: str, bucket: str) -> StorageError:
    """The StorageError that says what went wrong with a miniopy-async call."""
    code = getattr(exc, "code", None)
    if code == "NoSuchBucket":
        return MissingBucket(f"bucket {bucket!r} does not exist ({what})")
    if code in _NOT_FOUND:
        return ObjectNotFound(what)
    return StorageError(f"{what}: {type(exc).__name__}: {exc}")


def split_endpoint(endpoint: str, secure: bool) -> tuple[str, bool]:
    """`http://host:9000/` → ("host:9000", False); a scheme in the URL wins over `secure`."""
    value = endpoint.strip()
    if value.startswith("https://"):
        value, secure = value.removeprefix("https://"), True
    elif value.startswith("http://"):
        value, secure = value.removeprefix("http://"), False
    value = value.rstrip("/")
    if not value or "/" in value:
        raise ValueError(f"S3 endpoint must be host[:port] or a URL without a path: {endpoint!r}")
    return value, secure


class S3ObjectStore:
    name = "s3"

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        region: str,
        secure: bool,
    ) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self._host, self._secure = split_endpoint(endpoint, secure)
        self._access_key = access_key
        self._secret_key = secret_key
        self._region = region
        self._client: Any = None

    async def start(self) -> None:
        import aiohttp
        from miniopy_async.api import Minio

        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=_CONNECT_TIMEOUT_S,
                sock_connect=_CONNECT_TIMEOUT_S,
                sock_read=_READ_TIMEOUT_S,
            ),
        )
        self._client = Minio(
            self._host,
            access_key=self._access_key or None,
            secret_key=self._secret_key or None,
            region=self._region or None,
            secure=self._secure,
            session=session,
        )
        try:
            await self._ensure_bucket()
        except StorageError as exc:
            # An unreachable store must not stop VTP from starting: /ready reports it
            # and the bucket is created on the next successful ping.
            log.warning("object store not usable yet: %s", exc)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close_session()

    def _require(self) -> Any:
        if self._client is None:
            raise StorageError("S3 object store is not started")
        return self._client

    async def _ensure_bucket(self) -> None:
        client = self._require()
        try:
            if not await client.bucket_exists(self.bucket):
                await client.make_bucket(self.bucket)
        except Exception as exc:
            if getattr(exc, "code", None) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return  # another process created it between the two calls
            raise StorageError(f"S3 {self.endpoint} bucket {self.bucket}: {exc}") from exc

    async def ping(self) -> None:
        # Always a round trip: ping is what /ready uses to tell whether S3 answers now.
        await self._ensure_bucket()

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        check_key(key)
        client = self._require()
        try:
            await client.put_object(
                self.bucket, key, io.BytesIO(data), len(data), content_type=content_type
            )
        except Exception as exc:
            raise s3_error(exc, f"upload of {key}", self.bucket) from exc
        return ObjectInfo(key, len(data), content_type)

    async def put_file(
        self, key: str, path: Path, content_type: str, *, part_size: int | None = None
    ) -> ObjectInfo:
        check_key(key)
        client = self._require()
        try:
            size = (await asyncio.to_thread(path.stat)).st_size
            await client.fput_object(
                self.bucket,
                key,
                str(path),
                content_type=content_type,
                part_size=part_size or 0,  # 0: miniopy-async picks from the size
                num_parallel_uploads=2,
            )
        except Exception as exc:
            raise s3_error(exc, f"upload of {key}", self.bucket) from exc
        return ObjectInfo(key, size, content_type)

    async def get_bytes(self, key: str) -> bytes:
        check_key(key)
        client = self._require()
        try:
            response = await client.get_object(self.bucket, key)
            try:
                data: bytes = await response.read()
            finally:
                response.release()
        except Exception as exc:
            raise s3_error(exc, f"download of {key}", self.bucket) from exc
        return data

    async def stat(self, key: str) -> ObjectInfo:
        check_key(key)
        client = self._require()
        try:
            result = await client.stat_object(self.bucket, key)
        except Exception as exc:
            raise s3_error(exc, f"stat of {key}", self.bucket) from exc
        return ObjectInfo(key, int(result.size), result.content_type or "application/octet-stream")

    async def stream(self, key: str) -> AsyncGenerator[bytes, None]:
        check_key(key)
        client = self._require()
        try:
            response = await client.get_object(self.bucket, key)
        except Exception as exc:
            raise s3_error(exc, f"download of {key}", self.bucket) from exc
        try:
            async for chunk in response.content.iter_chunked(CHUNK):
                yield chunk
        except Exception as exc:
            raise s3_error(exc, f"download of {key}", self.bucket) from exc
        finally:
            response.release()

    async def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        async with contextlib.aclosing(self.stream(key)) as chunks:
            async for chunk in chunks:
                digest.update(chunk)
        return digest.hexdigest()

    async def presign_get(self, key: str, ttl_s: int) -> str | None:
        check_key(key)
        client = self._require()
        try:
            url: str = await client.presigned_get_object(
                self.bucket, key, expires=timedelta(seconds=ttl_s)
            )
        except Exception as exc:
            raise s3_error(exc, f"presigning {key}", self.bucket) from exc
        return url

    def local_path(self, key: str) -> Path | None:
        return None

    async def delete(self, key: str) -> None:
        """Remove an object; removing one that does not exist is not an error."""
        check_key(key)
        client = self._require()
        try:
            await client.remove_object(self.bucket, key)
        except Exception as exc:
            if getattr(exc, "code", None) in _NOT_FOUND:
                return
            raise StorageError(f"cannot delete {key}: {exc}") from exc
