"""Every SFU route has an access rule; room access is decided by one function."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from helpers import assert_app_refuses_route

from vtp.api.access import access_of
from vtp.app import create_app
from vtp.auth.principal import Principal
from vtp.config import Config
from vtp.signalling.access import RoomGrant, may_read_room_state, room_access

EXPECTED = {
    ("GET", "/api/v1/sfu/ws"): "public",  # authenticates inside the protocol
    ("GET", "/api/v1/sfu/health"): "public",
    ("GET", "/api/v1/sfu/rtp-capabilities"): "authenticated",
    ("GET", "/api/v1/sfu/ice-servers"): "authenticated",
    ("POST", "/api/v1/sfu/rooms/{room}/transports"): "authenticated",
    ("POST", "/api/v1/sfu/rooms/{room}/transports/{transport_id}/connect"): "authenticated",
    ("POST", "/api/v1/sfu/rooms/{room}/transports/{transport_id}/ice"): "authenticated",
    ("DELETE", "/api/v1/sfu/rooms/{room}/transports/{transport_id}"): "authenticated",
    ("GET", "/api/v1/sfu/rooms/{room}"): "authenticated",
    ("OPTIONS", "/api/v1/whip/{room}"): "public",
    ("POST", "/api/v1/whip/{room}"): "authenticated",
    ("PATCH", "/api/v1/whip/{room}/{resource}"): "authenticated",
    ("DELETE", "/api/v1/whip/{room}/{resource}"): "authenticated",
    ("OPTIONS", "/api/v1/whip/{room}/{resource}"): "public",
    ("OPTIONS", "/api/v1/whep/{room}"): "public",
    ("OPTIONS", "/api/v1/whep/{room}/{stream_id}"): "public",
    ("POST", "/api/v1/whep/{room}"): "authenticated",
    ("POST", "/api/v1/whep/{room}/{stream_id}"): "authenticated",
    ("PATCH", "/api/v1/whep/{room}/sessions/{resource}"): "authenticated",
    ("DELETE", "/api/v1/whep/{room}/sessions/{resource}"): "authenticated",
    ("OPTIONS", "/api/v1/whep/{room}/sessions/{resource}"): "public",
}


def test_every_sfu_route_has_the_expected_rule(config: Config) -> None:
    app = create_app(config)
    rules = {}
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if (
            path.startswith(("/api/v1/sfu", "/api/v1/whip", "/api/v1/whep"))
            and route.method != "HEAD"
        ):
            rule = access_of(route.handler)
            assert rule is not None, (route.method, path)
            rules[(route.method, path)] = rule.describe()
    assert rules == EXPECTED


def test_create_app_refuses_an_sfu_route_without_a_rule(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_app_refuses_route(
        config, monkeypatch, "/api/v1/sfu/naked", r"without an access rule: .*GET /api/v1/sfu/naked"
    )


def principal(role: Any) -> Principal:
    return Principal(uuid.uuid4(), role, "t", "f", int(time.time()) + 60)


async def test_room_access(aiohttp_client: Any, config: Config) -> None:
    """Open rooms (no course session of that name; see also
    tests/domain/test_session_room_access.py for session rooms), which an operator
    turned on (they are off by default)."""
    client = await aiohttp_client(create_app(config.model_copy(update={"sfu_open_rooms": True})))
    app = client.server.app
    for role in ("teacher", "admin"):
        assert await room_access(app, principal(role), "class-1") == RoomGrant(
            "presenter", may_publish=True
        )
    assert await room_access(app, principal("student"), "class-1") == RoomGrant(
        "viewer", may_publish=True
    )
    for bad in ("", "-x", "a b", "x" * 65, "../etc", "é"):
        assert await room_access(app, principal("admin"), bad) is None
    assert await may_read_room_state(app, principal("student"), "class-1", is_member=True)
    assert not await may_read_room_state(app, principal("student"), "class-1", is_member=False)
    # A site teacher is not thereby staff of every room (course rooms: test_session_room_access).
    assert not await may_read_room_state(app, principal("teacher"), "class-1", is_member=False)
    assert await may_read_room_state(app, principal("admin"), "class-1", is_member=False)
