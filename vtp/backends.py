"""The one place that chooses between real services and the embedded defaults.

With DATABASE_URL / REDIS_URL / VTP_S3_ENDPOINT set, VTP talks to those servers; with
them unset it runs an embedded PostgreSQL (pgserver), an in-process Redis (fakeredis)
and a local-disk object store, so `vtp serve` works on a fresh machine. Everything
else sees one interface per service and never asks which one it got.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from redis.asyncio import Redis

from vtp.config import Config
from vtp.db.embedded import EmbeddedPostgres
from vtp.db.pool import create_pool
from vtp.storage import ObjectStore
from vtp.storage.local import LocalObjectStore
from vtp.storage.s3 import S3ObjectStore


@asynccontextmanager
async def database_url(config: Config) -> AsyncIterator[str]:
    if config.database_url:
        yield config.database_url
        return
    server = EmbeddedPostgres(config.data_dir / "pgdata")
    uri = await server.start()
    try:
        yield uri
    finally:
        await server.stop()


@asynccontextmanager
async def database(config: Config) -> AsyncIterator[asyncpg.Pool]:
    async with database_url(config) as dsn:
        pool = await create_pool(dsn, min_size=config.db_pool_min, max_size=config.db_pool_max)
        try:
            yield pool
        finally:
            await pool.close()


@asynccontextmanager
async def redis(config: Config) -> AsyncIterator[Redis]:
    if config.redis_url:
        client: Redis = Redis.from_url(config.redis_url)
    else:
        from fakeredis import FakeAsyncRedis

        # One in-process server shared by every client of this process: revocation,
        # rate limits and pub/sub behave as with a real Redis, within one process.
        client = FakeAsyncRedis()
    try:
        yield client
    finally:
        await client.aclose()


@asynccontextmanager
async def object_store(config: Config) -> AsyncIterator[ObjectStore]:
    store: ObjectStore
    if config.s3_endpoint:
        store = S3ObjectStore(
            config.s3_endpoint,
            config.s3_access_key,
            config.s3_secret_key.get_secret_value(),
            config.s3_bucket,
            region=config.s3_region,
            secure=config.s3_secure,
        )
    else:
        store = LocalObjectStore(config.data_dir / "objects" / config.s3_bucket)
    await store.start()
    try:
        yield store
    finally:
        await store.close()
