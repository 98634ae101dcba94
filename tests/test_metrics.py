"""/metrics: who may read it, and that it reports what the process does (real
PostgreSQL and Redis through the app; real aiortc peers in the SFU)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aioice.ice
import pytest
from helpers import bearer
from pydantic import SecretStr

from tests.sfu.clients import Publisher, Subscriber
from tests.support.waiting import eventually
from vtp.appkeys import SFU_KEY
from vtp.config import Config

METRICS_TOKEN = "prometheus-scrape-token-0123456789"


@pytest.fixture
def config(config: Config) -> Config:
    return config.model_copy(
        update={"metrics_token": SecretStr(METRICS_TOKEN), "ice_addresses": ["127.0.0.1"]}
    )


@pytest.fixture(autouse=True)
def loopback_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice leaves 127.0.0.1 out of host candidates: test clients gather on it."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


def value(text: str, name: str, labels: str = "") -> float:
    pattern = rf"^{re.escape(name)}{re.escape(labels)}\s+(\S+)$"
    match = re.search(pattern, text, re.M)
    assert match, f"{name}{labels} not in the exposition"
    return float(match.group(1))


async def scrape(client: Any, token: str | None = METRICS_TOKEN) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = await client.get("/metrics", headers=headers)
    return resp.status, await resp.text()


async def test_metrics_access(client: Any, accounts: Any) -> None:
    assert (await scrape(client, None))[0] == 401
    assert (await scrape(client, "not-the-token"))[0] == 401
    student = await accounts.with_role("student")
    status, _ = await scrape(client, student["access_token"])
    assert status == 403
    admin = await accounts.with_role("admin")
    status, text = await scrape(client, admin["access_token"])
    assert status == 200 and "vtp_http_requests_total" in text
    resp = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert resp.headers["Content-Type"].startswith("text/plain; version=")


async def test_http_and_service_metrics(client: Any, accounts: Any) -> None:
    user = await accounts.with_role("teacher")
    for _ in range(3):
        resp = await client.get("/api/v1/users/me", headers=bearer(user["access_token"]))
        assert resp.status == 200
    await client.get("/api/v1/users/me")  # 401
    await client.get("/no/such/page")  # 404, counted under one label
    status, text = await scrape(client)
    assert status == 200
    me = '{method="GET",route="/api/v1/users/me",status="200"}'
    assert value(text, "vtp_http_requests_total", me) >= 3
    assert value(text, "vtp_http_requests_total", me.replace("200", "401")) >= 1
    assert (
        value(text, "vtp_http_requests_total", '{method="GET",route="unmatched",status="404"}') >= 1
    )
    assert (
        value(
            text,
            "vtp_http_request_duration_seconds_count",
            '{method="GET",route="/api/v1/users/me"}',
        )
        >= 4
    )
    assert value(text, "vtp_db_pool_connections", '{state="idle"}') >= 0
    assert value(text, "vtp_recordings_active") == 0
    assert value(text, "vtp_sfu_rooms") == 0


async def test_sfu_totals_survive_closed_connections(client: Any) -> None:
    sfu = client.server.app[SFU_KEY]
    room = sfu.room("metrics")
    pub = Publisher(0, audio=False)
    sub = Subscriber()
    try:
        stream_id = await pub.publish(room.join("teacher"))
        await sub.subscribe(room.join("student"), stream_id)
        await eventually(lambda: len(sub.video().frames) >= 10, 15)
        _, text = await scrape(client)
        assert value(text, "vtp_sfu_rooms") == 1 and value(text, "vtp_sfu_peers") == 2
        assert value(text, "vtp_sfu_publications") == 1
        assert value(text, "vtp_sfu_subscriptions") == 1
        live = value(text, "vtp_sfu_forwarded_packets_total")
        assert live >= 10 and value(text, "vtp_sfu_received_packets_total") >= live
        assert value(text, "vtp_sfu_sent_packets_total") >= 10
        assert value(text, "vtp_sfu_sent_bytes_total") > 0
    finally:
        await asyncio.gather(pub.close(), sub.close())
    await eventually(lambda: not sfu.totals()["publications"], 10)
    _, text = await scrape(client)
    # the counters of closed connections are kept: totals never go down
    assert value(text, "vtp_sfu_forwarded_packets_total") >= live
    assert value(text, "vtp_sfu_publications") == 0
