"""Object storage (recordings, attachments, submissions): S3/MinIO or a local directory."""

from vtp.storage.base import ObjectInfo, ObjectNotFound, ObjectStore, StorageError

__all__ = ["ObjectInfo", "ObjectNotFound", "ObjectStore", "StorageError"]
