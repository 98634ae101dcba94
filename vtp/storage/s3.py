"""S3-compatible object storage (MinIO, SeaweedFS, AWS) through miniopy-async."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from vtp.storage.base import ObjectInfo, ObjectNotFound, StorageError, check_key

_NOT_FOUND = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}


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
        self._args: dict[str, Any] = {
            "access_key": access_key,
            "secret_key": secret_key,
            "region": region,
            "secure": secure,
        }
        self._client: Any = None

    async def start(self) -> None:
        from miniopy_async.api import Minio

        endpoint = self.endpoint.removeprefix("http://").removeprefix("https://")
        self._client = Minio(endpoint, **self._args)
        try:
            if not await self._client.bucket_exists(self.bucket):
                await self._client.make_bucket(self.bucket)
        except Exception:
            # An unreachable store must not stop VTP from starting: /ready reports it
            # and uploads retry. The bucket is created on the next successful ping.
            pass

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and hasattr(client, "close_session"):
            await client.close_session()

    async def ping(self) -> None:
        try:
            if not await self._client.bucket_exists(self.bucket):
                await self._client.make_bucket(self.bucket)
        except Exception as exc:
            raise StorageError(f"S3 {self.endpoint} bucket {self.bucket}: {exc}") from exc

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        try:
            await self._client.put_object(
                self.bucket,
                check_key(key),
                io.BytesIO(data),
                len(data),
                content_type=content_type,
            )
        except Exception as exc:
            raise StorageError(f"cannot upload {key}: {exc}") from exc
        return ObjectInfo(key, len(data), content_type)

    async def put_file(self, key: str, path: Path, content_type: str) -> ObjectInfo:
        try:
            await self._client.fput_object(
                self.bucket, check_key(key), str(path), content_type=content_type
            )
        except Exception as exc:
            raise StorageError(f"cannot upload {key}: {exc}") from exc
        return await self.stat(key)

    async def get_bytes(self, key: str) -> bytes:
        import aiohttp

        try:
            async with aiohttp.ClientSession() as session:
                response = await self._client.get_object(self.bucket, check_key(key), session)
                data: bytes = await response.read()
                return data
        except Exception as exc:
            if getattr(exc, "code", None) in _NOT_FOUND:
                raise ObjectNotFound(key) from exc
            raise StorageError(f"cannot download {key}: {exc}") from exc

    async def stat(self, key: str) -> ObjectInfo:
        try:
            result = await self._client.stat_object(self.bucket, check_key(key))
        except Exception as exc:
            if getattr(exc, "code", None) in _NOT_FOUND:
                raise ObjectNotFound(key) from exc
            raise StorageError(f"cannot stat {key}: {exc}") from exc
        return ObjectInfo(key, int(result.size), result.content_type or "")

    async def delete(self, key: str) -> None:
        try:
            await self._client.remove_object(self.bucket, check_key(key))
        except Exception as exc:
            raise StorageError(f"cannot delete {key}: {exc}") from exc
