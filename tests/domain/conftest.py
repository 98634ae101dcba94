"""Fixtures for the teaching-domain API tests: a course with its cast of users."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from domain_helpers import Actor, World, make_world


@pytest.fixture
async def world(client: Any, accounts: Any) -> World:
    """A course (owned by `teacher`) with a TA, a student and an observer; `other` is a
    student of another course; `admin` is a site admin; `outsider` is in no course."""
    return await make_world(client, accounts)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    for type_name in ("json", "jsonb"):  # as the app's pool does
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
    yield conn
    await conn.close()


__all__ = ["Actor", "World"]
