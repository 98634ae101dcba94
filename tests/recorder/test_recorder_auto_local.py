"""Automatic recording on the embedded (local-disk) store: a live session with
``auto_record`` starts recording when its first stream is published, stops when the
session ends (its room closes), and plays back through signed, Range-capable links."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from pathlib import Path
from typing import Any

import aioice.ice
import pytest

from tests.recorder.recorder_helpers import FlashPublisher, analyse, live_session
from vtp.config import Config

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def loopback_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


async def test_auto_record_until_the_session_ends_then_local_playback(
    aiohttp_client: Any, config: Config, tmp_path: Path
) -> None:
    from tests.conftest import Accounts
    from vtp.app import create_app
    from vtp.appkeys import DB, SFU_KEY

    cfg = config.model_copy(
        update={"ice_addresses": ["127.0.0.1"], "recording_spool_dir": tmp_path / "spool"}
    )
    client = await aiohttp_client(create_app(cfg))
    app = client.server.app
    world = await live_session(client, Accounts(client, cfg.database_url or ""), auto_record=True)
    session_id = world["session"]["id"]
    state_url = f"/api/v1/sessions/{session_id}/recording"
    assert (await (await client.get(state_url, headers=world["student"])).json())[
        "recording"
    ] is False

    room = app[SFU_KEY].room(world["session"]["room_name"])
    publisher = FlashPublisher(time.time())
    try:
        await publisher.publish(room.join("teacher-cam"))
        deadline = time.monotonic() + 15
        while True:
            state = await (await client.get(state_url, headers=world["student"])).json()
            if state["recording"]:
                break
            assert time.monotonic() < deadline, "the recording did not start by itself"
            await asyncio.sleep(0.2)
        started = time.monotonic()
        rid = state["recording_id"]
        await asyncio.sleep(4.0)
        resp = await client.post(f"/api/v1/sessions/{session_id}/end", headers=world["teacher"])
        assert resp.status == 200, await resp.text()
        recorded = time.monotonic() - started
    finally:
        await publisher.close()

    resp = await client.post(f"{state_url}/start", headers=world["teacher"])
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "session_not_live"

    pool = app[DB]
    deadline = time.monotonic() + 30
    while (row := await pool.fetchrow("SELECT * FROM recordings WHERE id = $1", uuid.UUID(rid)))[
        "status"
    ] != "available":
        assert row["status"] in ("recording", "uploading"), dict(row)
        assert time.monotonic() < deadline, dict(row)
        await asyncio.sleep(0.2)
    assert row["started_by"] is None  # started by the session's auto_record
    assert state["recording"] is True

    play = f"/api/v1/recordings/{rid}/playback"
    assert (await client.get(play, headers=world["outsider"])).status == 403
    resp = await client.get(play, headers=world["student"])
    assert resp.status == 200, await resp.text()
    url = (await resp.json())["url"]
    assert url.startswith(f"/api/v1/recordings/{rid}/media/")
    assert (await resp.json())["expires_in"] == 300  # a bearer URL: short-lived by default
    import stat

    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700

    # the signed link works without a bearer token (a <video> element cannot send one)
    whole = await client.get(url)
    assert whole.status == 200
    data = await whole.read()
    assert len(data) == row["size_bytes"]
    part = await client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert await part.read() == data[100:200]
    tampered = url.replace("signature=", "signature=0")
    assert (await client.get(tampered)).status == 403
    key = hashlib.sha256(
        b"vtp-recording-media:" + cfg.jwt_secret.get_secret_value().encode()  # type: ignore[union-attr]
    ).digest()
    name = url.split("?")[0].rsplit("/", 1)[1]
    old = int(time.time()) - 5
    signature = hmac.new(key, f"{rid}/{name}/{old}".encode(), hashlib.sha256).hexdigest()
    expired = await client.get(f"{url.split('?')[0]}?expires={old}&signature={signature}")
    assert expired.status == 403
    assert "expired" in (await expired.json())["error"]["message"]

    path = tmp_path / "auto.webm"
    path.write_bytes(data)
    result = analyse(path)
    assert result["codecs"] == ["opus", "vp8"]
    # recording ran from the first stream (a moment before `started`) to the room's close
    assert recorded - 0.5 < result["duration"] < recorded + 1.5, (result["duration"], recorded)
    assert result["video_frames"] > 25 * (result["duration"] - 1)
