"""Object storage (recordings, attachments, submissions): S3/MinIO or a local directory."""

from vtp.storage.base import (
    MissingBucket,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    file_sha256,
)

__all__ = [
    "MissingBucket",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "StorageError",
    "file_sha256",
]
