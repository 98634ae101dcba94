"""A recorded class, end to end, against a real SeaweedFS S3 server.

One long recording is shared by most assertions: real aiortc publishers (VP8 + Opus,
encoded on the client side) publish into the SFU, a teacher starts and stops the
recording through the API, a second publisher joins and leaves in the middle, the S3
server is killed during the recording and started again after it: the upload, whose
backoff timer is set far beyond the test, is retried as soon as the store answers
again, and arrives intact (size + SHA-256). The file is downloaded through
the playback API's presigned URL and probed with PyAV. A copy of the spool taken in
the middle of the recording (what a crash leaves on disk) is handed to a freshly
started recorder, which seals it (duration and Cues, by a remux), records where it
was cut, and uploads it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aioice.ice
import asyncpg
import av
import pytest

from tests.recorder.recorder_helpers import (
    FlashPublisher,
    analyse,
    av_offsets,
    live_session,
)
from tests.s3 import SeaweedS3, require_weed, restart_seaweedfs, start_seaweedfs
from tests.support.waiting import eventually
from vtp.config import Config

pytestmark = pytest.mark.slow

CUES = b"\x1c\x53\xbb\x6b"  # the Matroska Cues element's ID

RECORD_S = 12.0


@pytest.fixture(autouse=True)
def loopback_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[SeaweedS3]]:
    """A SeaweedFS server; the list holds the current process (tests restart it)."""
    require_weed()
    servers = [start_seaweedfs(tmp_path_factory.mktemp("weed"))]
    try:
        yield servers
    finally:
        servers[-1].stop()


def s3_config(config: Config, server: SeaweedS3, tmp_path: Path) -> Config:
    return config.model_copy(
        update={
            "s3_endpoint": server.endpoint,
            "s3_access_key": server.access_key,
            "s3_secret_key": __import__("pydantic").SecretStr(server.secret_key),
            "s3_bucket": "rec-" + uuid.uuid4().hex[:8],
            "ice_addresses": ["127.0.0.1"],
            "recording_spool_dir": tmp_path / "spool",
            # the backoff alone would retry in 10 min: only the store probe can retry
            # within the test
            "recording_retry_first_s": 600.0,
            "recording_retry_max_s": 600.0,
            "recording_retry_attempts": 1,
            "peer_timeout_s": 30.0,
        }
    )


async def row_of(pool: asyncpg.Pool, recording_id: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM recordings WHERE id = $1", uuid.UUID(recording_id))
    assert row is not None
    return row


async def test_recorded_class_survives_s3_outage_and_crash(
    aiohttp_client: Any, config: Config, tmp_path: Path, weed: list[SeaweedS3]
) -> None:
    from tests.conftest import Accounts
    from vtp.app import create_app
    from vtp.appkeys import DB, RECORDER, SFU_KEY, STORE
    from vtp.recorder.service import Recorder

    cfg = s3_config(config, weed[0], tmp_path)
    client = await aiohttp_client(create_app(cfg))
    app = client.server.app
    accounts = Accounts(client, cfg.database_url or "")
    world = await live_session(client, accounts)
    session_id = world["session"]["id"]
    pool: asyncpg.Pool = app[DB]
    recorder: Recorder = app[RECORDER]
    changes: list[Any] = []
    recorder.add_listener(changes.append)  # what signalling relays to the room
    room = app[SFU_KEY].room(world["session"]["room_name"])

    epoch = time.time()
    teacher_pub = FlashPublisher(epoch)
    guest_pub = FlashPublisher(epoch, video=False)
    try:
        await teacher_pub.publish(room.join("teacher-cam"))
        await eventually(lambda: _async(bool(room.streams())), 15, "the teacher's stream")
        await asyncio.sleep(1.0)

        # --- start: staff only, once, while live ------------------------------------------
        base = f"/api/v1/sessions/{session_id}/recording"
        resp = await client.post(f"{base}/start", headers=world["student"])
        assert resp.status == 403
        resp = await client.post(f"{base}/start", headers=world["teacher"])
        assert resp.status == 201, await resp.text()
        t_start = time.monotonic()
        recording = await resp.json()
        assert recording["status"] == "recording"
        resp = await client.post(f"{base}/start", headers=world["teacher"])
        assert resp.status == 409
        assert (await resp.json())["error"]["code"] == "already_recording"
        resp = await client.get(base, headers=world["student"])
        assert (await resp.json())["recording"] is True
        rid = recording["id"]
        assert [(c.state, str(c.recording_id)) for c in changes] == [("started", rid)]
        spool_dir = cfg.recording_spool / rid

        # --- a guest joins and leaves; the S3 server dies; a crash copy is taken ----------
        await asyncio.sleep(3.0)
        await guest_pub.publish(room.join("guest-mic"))
        await asyncio.sleep(1.0)
        weed[0].stop()  # S3 down for the rest of the recording
        await asyncio.sleep(2.0)
        crash_copy = tmp_path / "crash-copy"
        shutil.copytree(spool_dir, crash_copy)  # what SIGKILL would leave on disk
        crash_wall = time.time()
        t_crash = time.monotonic() - t_start
        await guest_pub.close()
        await asyncio.sleep(max(0.0, RECORD_S - (time.monotonic() - t_start)))

        # --- stop: the upload fails while S3 is down ---------------------------------------
        resp = await client.post(f"{base}/stop", headers=world["teacher"])
        t_recorded = time.monotonic() - t_start
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["status"] == "uploading"
        resp = await client.post(f"{base}/stop", headers=world["teacher"])
        assert resp.status == 409
        assert [c.state for c in changes] == ["started", "stopped"]
        assert changes[-1].room == room.name

        async def failed() -> bool:
            row = await row_of(pool, rid)
            return row["status"] == "failed" and bool(row["error"])

        await eventually(failed, 60, "the failed upload to show")
        row = await row_of(pool, rid)
        assert "unreachable" in row["error"], row["error"]
        ready = await (await client.get("/ready")).json()
        assert ready["components"]["recorder"]["status"] == "down"
        assert "waiting to retry" in ready["components"]["recorder"]["error"]
        assert (spool_dir / "manifest.json").is_file()  # nothing deleted

        # --- S3 back: the upload is retried at once and arrives intact ---------------------------
        weed.append(restart_seaweedfs(weed[0]))
        t_back = time.monotonic()

        async def available() -> bool:
            return (await row_of(pool, rid))["status"] == "available"

        await eventually(available, 30, "the upload after S3 came back")
        t_retried = time.monotonic() - t_back
        row = await row_of(pool, rid)
        assert row["error"] is None
        assert row["ended_reason"] == "stopped" and row["cut_at"] is None

        async def spool_copy_gone() -> bool:  # deleted right after the row says available
            return not spool_dir.exists()

        await eventually(spool_copy_gone, 5, "the spool copy to be deleted")
        ready = await (await client.get("/ready")).json()
        assert ready["components"]["recorder"]["status"] == "ok", ready

        # --- playback: members only -----------------------------------------------------------
        play = f"/api/v1/recordings/{rid}/playback"
        assert (await client.get(play, headers=world["outsider"])).status == 403
        resp = await client.get(play, headers=world["student"])
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert len(body["files"]) == 2, body
        async with aiohttp.ClientSession() as http, http.get(body["url"]) as download:
            assert download.status == 200
            data = await download.read()
        assert len(data) == row["size_bytes"]
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        video_path = tmp_path / "main.webm"
        video_path.write_bytes(data)
        guest = next(f for f in body["files"] if f["kinds"] == ["audio"])
        async with aiohttp.ClientSession() as http, http.get(guest["url"]) as download:
            guest_path = tmp_path / "guest.webm"
            guest_path.write_bytes(await download.read())

        # --- the files -------------------------------------------------------------------------
        main = analyse(video_path)
        assert main["codecs"] == ["opus", "vp8"]
        assert abs(main["duration"] - t_recorded) < 0.5, (main["duration"], t_recorded)
        assert main["video_frames"] > 25 * (t_recorded - 1), main["video_frames"]
        assert main["audio_windows"] * 0.005 > t_recorded - 0.5
        offsets = av_offsets(main)
        print(  # figures for the report (pytest -s)
            f"\nrecorded {t_recorded:.2f} s; file {main['duration']:.2f} s; "
            f"{main['video_frames']} video frames; A/V onset offsets (s) "
            f"{[round(o, 3) for o in offsets]}; crash copy at {t_crash:.2f} s; "
            f"uploaded {t_retried:.2f} s after S3 answered again"
        )
        assert len(offsets) >= int(t_recorded) - 2, (main["video_onsets"], main["audio_onsets"])
        assert abs(statistics.median(offsets)) < 0.1, offsets
        assert max(abs(o) for o in offsets) < 0.15, offsets
        manifest = await app[STORE].get_bytes(f"recordings/{rid}/manifest.json")
        files = {f["name"]: f for f in json.loads(manifest)["files"]}
        assert files[guest["name"]]["ended"] == "stream ended"
        assert 3.0 < files[guest["name"]]["offset_ms"] / 1000 < 5.5
        guest_file = analyse(guest_path)
        assert guest_file["codecs"] == ["opus"]
        assert 2.0 < guest_file["duration"] < 4.5, guest_file["duration"]
        assert guest_file["audio_onsets"], "the guest's tone is in the file"
    finally:
        await asyncio.gather(teacher_pub.close(), guest_pub.close())

    # --- crash: a fresh recorder finds the cut recording in its spool and uploads it -------------
    crash_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO recordings (id, session_id, status) VALUES ($1, $2, 'recording')",
        crash_id,
        uuid.UUID(session_id),
    )
    lost_id = uuid.uuid4()  # a row whose files are gone (spool wiped): failed, not stuck
    await pool.execute(
        "INSERT INTO recordings (id, session_id, status) VALUES ($1, $2, 'recording')",
        lost_id,
        uuid.UUID(session_id),
    )
    spool2 = tmp_path / "spool-after-crash"
    spool2.mkdir()
    shutil.copytree(crash_copy, spool2 / str(crash_id))
    manifest_path = spool2 / str(crash_id) / "manifest.json"
    assert json.loads(manifest_path.read_text())["state"] == "recording"
    cfg2 = cfg.model_copy(update={"recording_spool_dir": spool2})
    restarted = Recorder(cfg2, pool, app[STORE], sfu=None)
    await restarted.start()
    try:

        async def crash_available() -> bool:
            return (await row_of(pool, str(crash_id)))["status"] == "available"

        await eventually(crash_available, 60, "the crash copy to be uploaded")
    finally:
        await restarted.close()
    lost = await row_of(pool, str(lost_id))
    assert lost["status"] == "failed" and "no files in the spool" in lost["error"]
    row = await row_of(pool, str(crash_id))
    cut = tmp_path / "cut.webm"
    cut.write_bytes(await app[STORE].get_bytes(row["object_key"]))
    assert hashlib.sha256(cut.read_bytes()).hexdigest() == row["sha256"]
    partial = analyse(cut)
    print(f"crash copy plays to {partial['video_times'][-1]:.2f} s of {t_crash:.2f} s")
    assert partial["codecs"] == ["opus", "vp8"]
    # sealed: players see its length and can seek
    assert CUES in cut.read_bytes()
    assert partial["duration"] == pytest.approx(partial["video_times"][-1], abs=0.1)
    with av.open(str(cut)) as container:
        keyframes = [
            float(p.pts * p.time_base)
            for p in container.demux(video=0)
            if p.is_keyframe and p.pts is not None and p.time_base is not None
        ]
        middle = container.duration // 2
        container.seek(middle)
        first = next(container.decode(video=0))
        # the seek lands on the last keyframe before the middle
        assert float(first.time) == max(k for k in keyframes if k <= middle / 1e6)
    # the row says it was cut, and when (the end of what reached the disk)
    assert row["ended_reason"] == "cut"
    assert -1.0 < row["cut_at"].timestamp() - crash_wall < 0.3, (row["cut_at"], crash_wall)
    assert row["ended_at"] == row["cut_at"]
    assert row["duration_ms"] == pytest.approx(t_crash * 1000, abs=1000)
    listed = await client.get(f"/api/v1/sessions/{session_id}/recordings", headers=world["teacher"])
    assert listed.status == 200
    by_id = {r["id"]: r for r in (await listed.json())["items"]}
    assert by_id[str(crash_id)]["ended_reason"] == "cut"
    assert by_id[str(crash_id)]["cut_at"] is not None
    assert by_id[rid]["ended_reason"] == "stopped" and by_id[rid]["cut_at"] is None
    assert by_id[str(lost_id)]["ended_reason"] == "cut"
    # the cut file plays up to (nearly) the moment of the copy
    assert t_crash - 1.0 < partial["video_times"][-1] <= t_crash + 0.2, (
        partial["video_times"][-1],
        t_crash,
    )
    assert partial["video_frames"] > 25 * (t_crash - 1.5)
    assert not (spool2 / str(crash_id)).exists()

    # --- a file larger than a part goes up in parts and verifies -----------------------------
    from vtp.storage.s3 import S3ObjectStore

    big = tmp_path / "big.webm"
    big.write_bytes(os.urandom(11 * 1024 * 1024))
    store = S3ObjectStore(
        cfg.s3_endpoint or "",
        cfg.s3_access_key,
        cfg.s3_secret_key.get_secret_value(),
        cfg.s3_bucket,
        region=cfg.s3_region,
        secure=cfg.s3_secure,
    )
    await store.start()
    try:
        key = "recordings/multipart/big.webm"
        info = await store.put_file(key, big, "video/webm", part_size=5 * 1024 * 1024)
        assert info.size == (await store.stat(key)).size == big.stat().st_size
        digest = hashlib.sha256(big.read_bytes()).hexdigest()
        assert await store.sha256(key) == digest
    finally:
        await store.close()


async def _async(value: Any) -> Any:
    return value
