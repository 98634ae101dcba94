"""SFU test fixtures: a started Sfu gathering on 127.0.0.1, clients on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aioice.ice
import pytest

from tests.sfu.clients import EventLog
from tests.sfu.running import running_sfu
from vtp.config import Config, load_config
from vtp.sfu import Sfu


@pytest.fixture(autouse=True)
def loopback_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice leaves 127.0.0.1 out of host candidates: test clients gather on it."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
def sfu_config() -> Config:
    return load_config(ice_addresses=["127.0.0.1"], room_grace_s=0.5, peer_timeout_s=5)


@pytest.fixture
async def sfu(sfu_config: Config) -> AsyncIterator[Sfu]:
    async with running_sfu(sfu_config) as service:
        yield service


@pytest.fixture
def event_log(sfu: Sfu) -> EventLog:
    log = EventLog()
    sfu.add_listener(log)
    return log
