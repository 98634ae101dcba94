"""H.264 and VP9 end to end in Chromium: a Chromium publisher restricted to one codec
(``setCodecPreferences``), forwarded without transcoding to a Chromium subscriber that
decodes it at the size sent."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.sfu import test_browser
from tests.sfu.clients import EventLog
from tests.support.waiting import eventually
from vtp.sfu import Sfu

# the Chromium and signalling-page fixtures of test_browser (one network mode here)
browser = test_browser.browser
signalling = test_browser.signalling
poll = test_browser.poll

pytestmark = pytest.mark.browser

PUBLISH_WITH = """async ([peer, mime, fmtp]) => {
  const media = await navigator.mediaDevices.getUserMedia(
    {video: {width: 640, height: 480, frameRate: 30}});
  const pc = new RTCPeerConnection();
  const tr = pc.addTransceiver(media.getVideoTracks()[0], {direction: 'sendonly'});
  const codecs = RTCRtpReceiver.getCapabilities('video').codecs.filter(
    c => c.mimeType === mime && (c.sdpFmtpLine || '').includes(fmtp));
  tr.setCodecPreferences(codecs);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(resolve => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') resolve();
    });
  });
  const r = await fetch('/publish', {method: 'POST',
    body: JSON.stringify({peer, sdp: pc.localDescription.sdp})});
  if (!r.ok) throw new Error(await r.text());
  const body = await r.json();
  await pc.setRemoteDescription({type: 'answer', sdp: body.sdp});
  window.pubpc = pc;
  return body.stream;
}"""

# a WHEP viewer: Chromium offers (recvonly, every codec it decodes, its own payload types)
WHEP_VIEW = """async ([peer, stream]) => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', {direction: 'recvonly'});
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(resolve => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') resolve();
    });
  });
  const r = await fetch(`/whep/${peer}/${stream}`, {method: 'POST', body: pc.localDescription.sdp});
  if (r.status !== 201) throw new Error(await r.text());
  await pc.setRemoteDescription({type: 'answer', sdp: await r.text()});
  window.subpc = pc;
}"""

DECODED = """async () => {
  const stats = await window.subpc.getStats();
  let out = {framesDecoded: 0, width: 0, codec: ''};
  stats.forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      out.framesDecoded = s.framesDecoded || 0;
      out.width = s.frameWidth || 0;
      const codec = stats.get(s.codecId);
      out.codec = codec ? codec.mimeType + ' ' + (codec.sdpFmtpLine || '') : '';
    }
  });
  return out;
}"""

SENT_WIDTH = """async () => {
  let width = 0;
  (await window.pubpc.getStats()).forEach(s => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') width = s.frameWidth || 0;
  });
  return width;
}"""


async def same_width(publisher: Any, viewer: Any, within: float) -> dict[str, Any]:
    """The viewer's decoding stats once it decodes at the width the publisher sends
    (Chromium may change its send size while the bandwidth estimate ramps up)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        sent = await publisher.evaluate(f"({SENT_WIDTH})()")
        seen: dict[str, Any] = await viewer.evaluate(f"({DECODED})()")
        if seen["framesDecoded"] > 30 and seen["width"] > 0 and seen["width"] == sent:
            return seen
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"decoded {seen}, publisher sends width {sent}")
        await asyncio.sleep(0.2)


@pytest.mark.parametrize(
    ("mime", "fmtp"),
    [("video/H264", "packetization-mode=1;profile-level-id=42e01f"), ("video/VP9", "profile-id=0")],
)
async def test_chromium_codec_end_to_end(
    sfu: Sfu, event_log: EventLog, signalling: str, browser: Any, mime: str, fmtp: str
) -> None:
    publisher = await browser.new_page()
    await publisher.goto(signalling)
    stream_id = await publisher.evaluate(PUBLISH_WITH, ["teacher", mime, fmtp])
    room = sfu.room("browser")
    await eventually(lambda: bool(room.streams()), 10)
    up = room.publication(stream_id)
    assert up is not None
    assert [t.mime_type for t in up.tracks] == [mime.lower()]
    assert f"{mime[6:]}/90000" in up.answer_sdp and "VP8" not in up.answer_sdp
    viewer = await browser.new_page()
    await viewer.goto(signalling)
    await viewer.evaluate(f"window.subscribe('student', '{stream_id}')")
    first = await same_width(publisher, viewer, 20)
    assert first["codec"].startswith(mime) and fmtp in first["codec"], first
    # decoding keeps going
    await poll(
        viewer, f"({DECODED})()", lambda s: s["framesDecoded"] >= first["framesDecoded"] + 30, 10
    )
    assert up.tracks[0].keyframes >= 1
