"""The application's SFU context and the service object's lifecycle."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vtp.app import sfu_ctx
from vtp.appkeys import CONFIG, SFU_KEY
from vtp.config import load_config
from vtp.sfu import Sfu


async def test_the_cleanup_ctx_owns_the_sfu(aiohttp_client: Any) -> None:
    app = web.Application()
    app[CONFIG] = load_config(ice_addresses=["127.0.0.1"])
    app.cleanup_ctx.append(sfu_ctx)
    client = await aiohttp_client(app)
    sfu = client.app[SFU_KEY]
    assert isinstance(sfu, Sfu) and sfu.started
    room = sfu.room("r")
    room.join("a")
    assert sfu.stats()["rooms"][0]["name"] == "r"  # type: ignore[index]
    await client.close()
    assert not sfu.started and sfu.rooms == {}
    assert room.closed


def test_rtp_capabilities() -> None:
    caps = Sfu.rtp_capabilities()
    codecs = caps["codecs"]
    mimes = [c["mimeType"] for c in codecs]  # type: ignore[index,union-attr]
    assert mimes[:2] == ["audio/opus", "video/VP8"]  # VP8 first: preferred
    assert set(mimes) == {"audio/opus", "video/VP8", "video/H264", "video/VP9"}
    h264 = [c["parameters"] for c in codecs if c["mimeType"] == "video/H264"]  # type: ignore[index,union-attr]
    assert {"42e01f", "640c1f"} <= {p["profile-level-id"] for p in h264}  # type: ignore[index]
    assert all(p["packetization-mode"] == 1 for p in h264)  # type: ignore[index]
    assert codecs[0]["parameters"]["useinbandfec"] == 1  # type: ignore[index]
    assert codecs[0]["parameters"]["usedtx"] == 1  # type: ignore[index]
