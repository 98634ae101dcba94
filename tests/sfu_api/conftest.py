"""Fixtures for the SFU signalling/REST/WHIP tests: the app's ICE agent gathers on
loopback so aiortc and Chromium peers in this process can reach it."""

from __future__ import annotations

import pytest

from vtp.config import Config


@pytest.fixture
def config(config: Config) -> Config:
    return config.model_copy(
        update={"ice_addresses": ["127.0.0.1"], "room_grace_s": 2.0, "peer_timeout_s": 10.0}
    )
