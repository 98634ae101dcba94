"""Chromium publishing VP8 simulcast with three temporal layers per encoding (L1T3, as
the VTP client does) through the SFU: a subscriber asking for 15 fps gets every other
frame of the same encoding, decoded without freezes, while another keeps 30 fps."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sfu.clients import EventLog
from tests.sfu.test_browser import browser, poll, signalling
from tests.sfu.test_simulcast_browser import down_of
from vtp.sfu import Sfu, temporal

pytestmark = pytest.mark.browser
__all__ = ["browser", "signalling"]

TEMPORAL_JS = """
window.publishL1T3 = async (peer) => {
  const media = await navigator.mediaDevices.getUserMedia(
    {video: {width: 1280, height: 720, frameRate: 30}, audio: false});
  const pc = new RTCPeerConnection();
  pc.addTransceiver(media.getVideoTracks()[0], {direction: 'sendonly', sendEncodings: [
    {rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000, scalabilityMode: 'L1T3'},
    {rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000, scalabilityMode: 'L1T3'},
    {rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1500000, scalabilityMode: 'L1T3'}]});
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const sdp = pc.localDescription.sdp.split('\\r\\n').filter(
    l => !l.includes('transport-cc') && !l.includes('transport-wide-cc')).join('\\r\\n');
  const r = await post('/publish', {peer, sdp});
  await pc.setRemoteDescription({type: 'answer', sdp: r.sdp});
  window.pubpc = pc;
  return r.stream;
};
window.modesSent = async () => {
  const out = {};
  (await window.pubpc.getStats()).forEach(s => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') out[s.rid] = s.scalabilityMode || '';
  });
  out.params = window.pubpc.getSenders()[0].getParameters().encodings.map(
    e => e.scalabilityMode || '');
  return out;
};
window.video = async () => {
  let out = null;
  (await window.subpc.getStats()).forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') out = {
      framesDecoded: s.framesDecoded || 0, fps: s.framesPerSecond || 0,
      freezeCount: s.freezeCount || 0, width: s.frameWidth || 0,
      packetsLost: s.packetsLost || 0};
  });
  return out;
};
"""


async def open_page(browser: Any, url: str) -> Any:
    page = await browser.new_page()
    await page.goto(url)
    await page.add_script_tag(content=TEMPORAL_JS)
    return page


async def test_chromium_subscriber_asking_15_fps_gets_half_the_frames_without_freezes(
    sfu: Sfu, signalling: str, browser: Any, event_log: EventLog
) -> None:
    publisher = await open_page(browser, signalling)
    stream = await publisher.evaluate("publishL1T3('teacher')")
    up = sfu.room("browser").publication(stream)
    assert up is not None
    video = up.tracks[0]
    # Chromium 156 takes L1T3 on every simulcast encoding and sends TIDs 0..2
    modes = await poll(publisher, "modesSent()", lambda m: m.get("q") == "L1T3", 15)
    assert modes["params"] == ["L1T3"] * 3, modes
    full, tile = await open_page(browser, signalling), await open_page(browser, signalling)
    await full.evaluate(f"subscribe('full', '{stream}')")
    await tile.evaluate(f"subscribe('tile', '{stream}')")
    for page in (full, tile):
        await poll(page, "video()", lambda v: v and v["fps"] >= 24, 25)
    assert max(layer.max_tid for layer in video.layers) == 2
    start = {"full": await full.evaluate("video()"), "tile": await tile.evaluate("video()")}
    # the tile asks for 15 fps: TL2 is dropped for it (the same encoding, every other frame)
    track_id = video.id
    down = next(d for d in down_of(sfu, "tile").tracks if d.kind == "video")
    down_of(sfu, "tile").set_preferences(track_id, max_fps=15)
    assert down.max_temporal == 1
    await poll(tile, "video()", lambda v: 12 <= v["fps"] <= 17, 10)
    assert down.temporal == 1
    before = await tile.evaluate("video()")
    # it keeps decoding at that rate: ~15 frames a second for 3 s
    during = await poll(
        tile, "video()", lambda v: v["framesDecoded"] >= before["framesDecoded"] + 40, 6
    )
    state = (
        down.temporal,
        down.max_temporal,
        down.up.rid,
        [(x.rid, x.max_tid, x.level_fps) for x in video.layers],
    )
    assert 12 <= during["fps"] <= 17, (during, state)
    control = await poll(full, "video()", lambda v: v["fps"] >= 24, 5)
    # full rate again: at the publisher's next layer-sync frames, no keyframe needed
    keyframes = sum(layer.keyframes for layer in video.layers)
    down_of(sfu, "tile").set_preferences(track_id)
    await poll(tile, "video()", lambda v: v["fps"] >= 24, 10)
    assert down.temporal == temporal.ALL
    # (a PLI makes Chromium send a keyframe on every layer: at most one of those)
    assert sum(layer.keyframes for layer in video.layers) - keyframes <= 3
    end = await tile.evaluate("video()")
    control = await full.evaluate("video()")
    # no freeze the control subscriber (never capped) did not have too
    tile_freezes = end["freezeCount"] - start["tile"]["freezeCount"]
    assert tile_freezes <= control["freezeCount"] - start["full"]["freezeCount"], (end, control)
    assert down.temporal_switches >= 2
