"""Fixtures for real services: a fresh PostgreSQL database per test (cloned from a
migrated template) and a real Redis database flushed before each test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from helpers import JWT_TEST_SECRET, Accounts
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from vtp.config import Config, load_config
from vtp.db.migrate import apply_migrations

PG_ADMIN_URL = os.environ.get(
    "VTP_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_BASE_URL = os.environ.get("VTP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# A database number of its own, so the tests never flush data someone else keeps.
REDIS_TEST_DB = 13
# VTP's media port defaults to 40000 (the one-port mode): tests run many servers at once,
# on a machine other test runs share, so each binds a free port of its own (the same
# mode). A test that means the per-connection mode says so (ice_udp_port=None or a port
# range); processes the tests start inherit this.
os.environ.setdefault("VTP_ICE_UDP_PORT", "0")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated database that each test's database is cloned from."""
    import asyncio

    name = f"vtp_tmpl_{os.getpid()}"

    async def create() -> None:
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(_with_database(PG_ADMIN_URL, name))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()

    async def drop() -> None:
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(create())
    yield name
    asyncio.run(drop())


async def _create_database(template: str | None) -> str:
    name = f"vtp_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        suffix = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        await admin.close()
    return name


async def _drop_database(name: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def empty_database_url() -> AsyncIterator[str]:
    """A brand-new database with no schema at all."""
    name = await _create_database(None)
    yield _with_database(PG_ADMIN_URL, name)
    await _drop_database(name)


@pytest.fixture
async def database_url(pg_template: str) -> AsyncIterator[str]:
    """A migrated database of this test's own."""
    name = await _create_database(pg_template)
    yield _with_database(PG_ADMIN_URL, name)
    await _drop_database(name)


@pytest.fixture
def redis_url() -> str:
    url = _with_database(REDIS_BASE_URL, str(REDIS_TEST_DB))
    client = SyncRedis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """An asyncio client of this test's Redis database (emptied before the test)."""
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def config(database_url: str, redis_url: str, tmp_path: Path) -> Config:
    return load_config(
        database_url=database_url,
        redis_url=redis_url,
        state_dir=tmp_path / "state",
        jwt_secret=JWT_TEST_SECRET,
        bcrypt_cost=4,
        log_level="WARNING",
        # every test account registers from 127.0.0.1 (tests of the limit lower it)
        register_max_per_address=10_000,
    )


@pytest.fixture
async def client(aiohttp_client: Any, config: Config) -> Any:
    """An HTTP client for a VTP app running against real PostgreSQL and Redis."""
    from vtp.app import create_app

    return await aiohttp_client(create_app(config))


@pytest.fixture
def accounts(client: Any, database_url: str) -> Accounts:
    return Accounts(client, database_url)
