"""GStreamer's webrtcbin publishing over WHIP (H.264 and VP8) to a Chromium subscriber.

Not collected by default: ``test_gstreamer_whip.py`` runs this module inside a network
namespace of its own (libnice gathers no loopback candidates, so the SFU and the
publisher meet on a veth pair's addresses there)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import pytest

from tests.sfu import test_browser
from tests.sfu.clients import EventLog
from tests.support.waiting import eventually
from vtp.config import Config, load_config
from vtp.sfu import Sfu

pytestmark = pytest.mark.browser

SFU_ADDRESS = os.environ.get("VTP_NETNS_SFU_ADDRESS", "10.213.0.1")
PUBLISHER = Path(__file__).with_name("gst_whip_publisher.py")
SYSTEM_PYTHON = "/usr/bin/python3"

browser = test_browser.browser
signalling = test_browser.signalling
poll = test_browser.poll


@pytest.fixture
def sfu_config() -> Config:
    return load_config(ice_addresses=[SFU_ADDRESS], room_grace_s=0.5, peer_timeout_s=5)


@pytest.mark.parametrize("codec", ["h264", "vp8"])
async def test_gstreamer_whip_publisher_to_chromium(
    sfu: Sfu, event_log: EventLog, signalling: str, browser: Any, codec: str
) -> None:
    publisher = await asyncio.create_subprocess_exec(
        SYSTEM_PYTHON,
        str(PUBLISHER),
        f"{signalling}whip/gstreamer",
        codec,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        # (rooms close when empty: look the room up, don't keep it)
        def streams() -> list[Any]:
            room = sfu.get_room("browser")
            return room.streams() if room is not None else []

        with contextlib.suppress(TimeoutError):
            await eventually(lambda: bool(streams()) or publisher.returncode is not None, 20)
        if not streams():
            if publisher.returncode is None:
                publisher.terminate()
            out, err = await publisher.communicate()
            raise AssertionError(f"no stream published: {out.decode()} {err.decode()[-3000:]}")
        room = sfu.room("browser")
        stream_id = room.streams()[0].id
        up = room.publication(stream_id)
        assert up is not None
        assert [t.mime_type for t in up.tracks] == [f"video/{codec}"]
        # VTP is the DTLS client; webrtcbin serves DTLS with its RSA certificate
        assert "a=setup:active" in up.answer_sdp
        viewer = await browser.new_page()
        await viewer.goto(signalling)
        await viewer.evaluate(f"window.subscribe('student', '{stream_id}')")
        first = await poll(
            viewer,
            "window.inbound()",
            lambda s: s.get("video", {}).get("framesDecoded", 0) > 30,
            20,
        )
        assert first["video"]["width"] == 640
        await poll(
            viewer,
            "window.inbound()",
            lambda s: s["video"]["framesDecoded"] >= first["video"]["framesDecoded"] + 30,
            10,
        )
        assert up.tracks[0].keyframes >= 1
    finally:
        if publisher.returncode is None:
            publisher.terminate()
            await publisher.wait()
