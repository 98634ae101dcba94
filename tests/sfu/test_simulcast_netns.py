"""A subscriber on a shaped link (network namespace + ``tc``): Chromium publishes three
simulcast layers; one Chromium subscriber sits behind a veth pair whose downlink is
shaped to 600 kbit/s and then released, another stays on loopback. The shaped one moves
to a lower layer and keeps decoding, the other keeps the top layer.

Needs root and iproute2 (``ip``, ``tc``); skipped cleanly without them."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sfu.clients import EventLog
from tests.sfu.test_browser import PAGE, poll, serve_on, signalling_app
from tests.sfu.test_simulcast_browser import SIMULCAST_JS, Room, down_of
from tests.support.chromium import CHROMIUM
from vtp.config import Config, load_config
from vtp.sfu import Sfu, events

pytestmark = [pytest.mark.browser, pytest.mark.netns]

NETNS = "simulcast-sub"
HOST_IF, NS_IF = "scv0", "scv1"
HOST_IP, NS_IP = "10.231.0.1", "10.231.0.2"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def namespace() -> Iterator[str]:
    """A namespace joined to this one by a veth pair (deleted afterwards)."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
        pytest.skip("needs root, ip and tc")
    if not CHROMIUM:
        pytest.skip("no Chromium")
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
    _ip("netns", "add", NETNS)
    try:
        _ip("link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
        _ip("link", "set", NS_IF, "netns", NETNS)
        _ip("addr", "add", f"{HOST_IP}/24", "dev", HOST_IF)
        _ip("link", "set", HOST_IF, "up")
        for args in (
            ("link", "set", "lo", "up"),
            ("addr", "add", f"{NS_IP}/24", "dev", NS_IF),
            ("link", "set", NS_IF, "up"),
        ):
            _ip("netns", "exec", NETNS, "ip", *args)
        yield NETNS
    finally:
        subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


def shape(rate: str | None) -> None:
    """Shape the subscriber's downlink (this side's egress), or release it."""
    subprocess.run(["tc", "qdisc", "del", "dev", HOST_IF, "root"], capture_output=True)
    if rate is not None:
        tbf = ["tbf", "rate", rate, "burst", "16kb", "latency", "200ms"]
        subprocess.run(
            ["tc", "qdisc", "add", "dev", HOST_IF, "root", *tbf],
            check=True,
            capture_output=True,
        )


@pytest.fixture
def sfu_config(namespace: str) -> Config:
    # (after the namespace: the SFU's media port opens on the veth address at start)
    return load_config(ice_addresses=["127.0.0.1", HOST_IP], room_grace_s=0.5, peer_timeout_s=10)


@pytest.fixture
async def signalling(sfu: Sfu, namespace: str) -> AsyncIterator[tuple[str, str]]:
    """The test page and its signalling, on loopback and on the veth address."""
    runner, urls = await serve_on(signalling_app(sfu, "browser", PAGE), "127.0.0.1", HOST_IP)
    try:
        yield urls[0], urls[1]
    finally:
        await runner.cleanup()


ARGS = [
    "--use-fake-device-for-media-stream=fps=30",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture
async def browsers(namespace: str, tmp_path: Path) -> AsyncIterator[tuple[Any, Any]]:
    """One Chromium here, one inside the namespace (launched through ``ip netns exec``;
    Playwright talks to it over a pipe, which crosses namespaces)."""
    from playwright.async_api import async_playwright

    wrapper = tmp_path / "chromium-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} "{CHROMIUM}" "$@"\n')
    wrapper.chmod(0o755)
    async with async_playwright() as p:
        here = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        there = await p.chromium.launch(executable_path=str(wrapper), args=ARGS)
        try:
            yield here, there
        finally:
            await there.close()
            await here.close()


async def open_page(browser: Any, url: str) -> Any:
    page = await browser.new_page()
    await page.goto(url)
    await page.add_script_tag(content=SIMULCAST_JS)
    return page


async def test_a_shaped_subscriber_gets_a_lower_layer_without_freezing(
    sfu: Sfu, signalling: tuple[str, str], browsers: tuple[Any, Any], event_log: EventLog
) -> None:
    local_url, veth_url = signalling
    here, there = browsers
    publisher = await open_page(here, local_url)
    room = Room(sfu, event_log, publisher)
    stream = await publisher.evaluate("publishSimulcast('teacher')")
    fast = await open_page(here, local_url)
    slow = await open_page(there, veth_url)
    await fast.evaluate(f"subscribe('fast', '{stream}')")
    await slow.evaluate(f"subscribe('slow', '{stream}')")
    await room.decodes_at(fast, 1280, within=25)
    before = await room.decodes_at(slow, 1280, within=15)
    control = await fast.evaluate("video()")
    shape("600kbit")
    try:
        # the shaped subscriber: down to a layer that fits, at a keyframe, still decoding
        await event_log.wait_for(
            lambda e: isinstance(e, events.LayerChanged) and e.peer_id == "slow" and e.rid != "f",
            within=20,
        )
        low = await poll(slow, "video()", lambda v: v["width"] < 1280, 10)
        moving = await poll(
            slow, "video()", lambda v: v["framesDecoded"] >= low["framesDecoded"] + 60, 15
        )
        # the unshaped one keeps the top layer, and the publisher keeps sending it
        kept = await room.decodes_at(fast, 1280, within=5, frames=60)
        assert down_of(sfu, "fast").tracks[1].rid == "f"
        sent = await publisher.evaluate("layersSent()")
        assert sent["f"][0] == 1280, sent
    finally:
        shape(None)
    # at most the stalls of the cut itself (600 kbit/s arrive while 1.2 Mbps are being
    # sent: the queue drops until the switch's keyframe; the allocator steps f -> h -> q
    # on a cut this hard, and h may still overflow the queue the f packets left, so up to
    # two on an unloaded machine, where the publisher sends its top layer at its full
    # rate), none once switched beyond what the unshaped control had meanwhile
    transition = low["freezeCount"] - before["freezeCount"]
    settled = moving["freezeCount"] - low["freezeCount"]
    control_freezes = kept["freezeCount"] - control["freezeCount"]
    assert transition <= 2 and settled <= control_freezes, (before, low, moving, control, kept)
    # released: the shaped one climbs back to the top layer
    await room.decodes_at(slow, 1280, within=40)
