"""Headless Chromium as publisher and subscriber through the WebSocket protocol.

aiortc forgives SSRC and payload-type mistakes that browsers do not: this test runs the
page sfu-test.html (beside this file, served by the test) in two browser contexts against
the SFU in this process.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from ws_peers import config  # noqa: F401  (loopback ICE for the app under test)

from tests.support.chromium import chromium, needs_chromium
from tests.support.waiting import eventually

pytestmark = [pytest.mark.browser, needs_chromium]

PAGE = Path(__file__).resolve().parent / "sfu-test.html"


@pytest.fixture
async def page_url(aiohttp_server: Any) -> str:
    """The test page, served on loopback by a server of its own."""

    async def test_page(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE)

    pages = web.Application()
    pages.router.add_get("/sfu-test.html", test_page)
    page_server = await aiohttp_server(pages, host="127.0.0.1")
    return str(page_server.make_url("/sfu-test.html"))


async def two_pages(browser: Any, url: str) -> tuple[Any, Any]:
    """A publisher's and a subscriber's page, each in a browser context of its own."""
    pages = []
    for _ in range(2):
        page = await (await browser.new_context()).new_page()
        await page.goto(url)
        pages.append(page)
    return pages[0], pages[1]


async def stats_of(page: Any) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate("vtpStats()")
    return result


async def wait_stats(page: Any, key: str, minimum: int, within: float) -> dict[str, Any]:
    async def reached() -> dict[str, Any]:
        stats = await stats_of(page)
        assert stats[key] >= minimum, f"{key} < {minimum}: {stats}"
        return stats

    result: dict[str, Any] = await eventually(reached, within, f"{key} >= {minimum}", 0.25)
    return result


async def test_chromium_publishes_and_chromium_watches(
    client: Any, accounts: Any, page_url: str
) -> None:
    teacher = await accounts.with_role("teacher")
    student = await accounts.with_role("student")
    ws_url = f"ws://127.0.0.1:{client.port}/api/v1/sfu/ws"

    async with chromium() as browser:
        pub_page, sub_page = await two_pages(browser, page_url)
        await pub_page.evaluate(
            "([u, t, r]) => vtpPublish(u, t, r)", [ws_url, teacher["access_token"], "chrome"]
        )
        await wait_stats(pub_page, "framesSent", 10, 15)
        await sub_page.evaluate(
            "([u, t, r]) => vtpWatch(u, t, r)", [ws_url, student["access_token"], "chrome"]
        )
        first = await wait_stats(sub_page, "framesDecoded", 10, 15)
        assert first["errors"] == [] and first["connectionState"] == "connected", first
        # Decoding goes on (the camera sends 30 fps; a loaded CI machine makes Chromium
        # scale down for CPU, so 20 more frames may take longer than 2/3 s), with audio.
        try:
            later = await wait_stats(sub_page, "framesDecoded", first["framesDecoded"] + 20, 5)
        except AssertionError as exc:
            sender = await stats_of(pub_page)
            sent = {k: sender.get(k) for k in ("limitation", "target", "sentFps", "sentWidth")}
            raise AssertionError(f"{exc}; the publisher: {sent}") from None
        assert later["frameWidth"] > 0 and later["audioPackets"] > 20, later
        assert (await stats_of(pub_page))["errors"] == []

        # The server counted what it forwarded.
        resp = await client.get(
            "/api/v1/sfu/rooms/chrome",
            headers={"Authorization": f"Bearer {teacher['access_token']}"},
        )
        state = await resp.json()
        assert resp.status == 200, state
        [producer] = state["producers"]
        assert {t["kind"] for t in producer["tracks"]} == {"audio", "video"}
        assert all(t["packets"] > 0 and t["bytes"] > 0 for t in producer["tracks"])
        [consumer] = state["consumers"]
        assert all(t["packets"] > 0 for t in consumer["tracks"]), consumer

        # The publisher's page goes away: the subscriber is told.
        await pub_page.close()

        async def told() -> bool:
            stats = await stats_of(sub_page)
            assert "stream-removed" in stats["log"], stats
            return True

        await eventually(told, 10, "stream-removed on the subscriber's page", 0.2)


async def test_chromium_whip_publish_watched_by_chromium_over_whep(
    client: Any, accounts: Any, page_url: str
) -> None:
    teacher = await accounts.with_role("teacher")
    student = await accounts.with_role("student")
    base = f"http://127.0.0.1:{client.port}/api/v1"

    async with chromium() as browser:
        pub_page, sub_page = await two_pages(browser, page_url)
        await pub_page.evaluate(
            "([u, t]) => vtpWhipPublish(u, t)", [f"{base}/whip/obs", teacher["access_token"]]
        )
        await wait_stats(pub_page, "framesSent", 10, 15)
        await sub_page.evaluate(
            "([u, t]) => vtpWhepWatch(u, t)", [f"{base}/whep/obs", student["access_token"]]
        )
        first = await wait_stats(sub_page, "framesDecoded", 10, 15)
        assert first["connectionState"] == "connected", first
        later = await wait_stats(sub_page, "framesDecoded", first["framesDecoded"] + 20, 5)
        assert later["frameWidth"] > 0 and later["audioPackets"] > 20, later


async def test_chromium_publisher_reaches_720p_and_its_silence_costs_little(
    client: Any, accounts: Any, page_url: str
) -> None:
    """The feedback VTP sends lets a 720p camera run at 720p: told a 2 Mbps start and not
    held back by its subscriber's REMB, Chromium's target passes 1.2 Mbps at once and the
    encoder reaches 1280x720 (it opened at 320x180 and crept up for 40 s before; the
    minute-long figures for 1 and 5 subscribers come from bench/uplink.py). And Opus DTX
    is negotiated: a silent microphone sends a few audio packets a second, not 50."""
    teacher = await accounts.with_role("teacher")
    student = await accounts.with_role("student")
    ws_url = f"ws://127.0.0.1:{client.port}/api/v1/sfu/ws"
    hd = {"width": {"exact": 1280}, "height": {"exact": 720}}

    async with chromium() as browser:
        pub_page, sub_page = await two_pages(browser, page_url)
        await pub_page.evaluate(
            "([u, t, r, v]) => vtpPublish(u, t, r, v)",
            [ws_url, teacher["access_token"], "ramp", hd],
        )
        await wait_stats(pub_page, "framesSent", 10, 15)
        answer = await pub_page.evaluate("vtp.pc.remoteDescription.sdp")
        [opus] = [ln for ln in answer.splitlines() if ln.startswith("a=fmtp:111 ")]
        assert "usedtx=1" in opus and "useinbandfec=1" in opus, answer
        assert "x-google-start-bitrate=2000" in answer, answer
        await sub_page.evaluate(
            "([u, t, r]) => vtpWatch(u, t, r)", [ws_url, student["access_token"], "ramp"]
        )
        await wait_stats(sub_page, "framesDecoded", 10, 15)

        async def at_720p() -> bool:
            sent = await stats_of(pub_page)
            assert sent["sentWidth"] >= 1280 and sent["target"] >= 1_200_000, {
                k: sent.get(k) for k in ("sentWidth", "target", "available", "limitation")
            }
            return True

        await eventually(at_720p, 20, "the publisher at 720p and 1.2 Mbps", 0.25)
        # (what the subscriber decodes follows the publisher's resolution, which the
        # browser's own delay-based estimate may lower again on a loaded machine)
        decoded = (await stats_of(sub_page))["framesDecoded"]
        await wait_stats(sub_page, "framesDecoded", decoded + 20, 10)
        # DTX: silence (here a disabled track: Chromium sends digital silence) costs a
        # few packets a second instead of 50
        await pub_page.evaluate(
            "vtp.pc.getSenders().forEach((s) => { if (s.track && s.track.kind === 'audio')"
            " s.track.enabled = false; })"
        )
        await asyncio.sleep(0.5)
        before = await pub_page.evaluate("vtpAudioSent()")
        await asyncio.sleep(3)
        after = await pub_page.evaluate("vtpAudioSent()")
        rate = (after["packets"] - before["packets"]) / ((after["at"] - before["at"]) / 1000)
        assert 0 < rate < 15, rate
