"""Headless Chromium through the SFU (browsers do not forgive SSRC or payload-type
mistakes the way aiortc does): aiortc -> Chromium and Chromium -> aiortc + Chromium."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.sfu.clients import EventLog, Publisher, Subscriber
from tests.support.chromium import chromium, needs_chromium
from tests.support.waiting import eventually
from vtp.config import Config, load_config
from vtp.sfu import Sfu, SfuError
from vtp.sfu.peer import Peer

pytestmark = [pytest.mark.browser, needs_chromium]

PAGE = """<!doctype html><html><body><canvas id="c" width="320" height="240"></canvas>
<script>
async function post(path, body) {
  const r = await fetch(path, {method: 'POST', body: JSON.stringify(body)});
  if (!r.ok) throw new Error(await r.text());
  return r.json();
}
function gathered(pc) {
  return new Promise(resolve => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') resolve();
    });
  });
}
window.publish = async (peer) => {
  const media = await navigator.mediaDevices.getUserMedia(
    {video: {width: 640, height: 480, frameRate: 30}, audio: true});
  const pc = new RTCPeerConnection();
  for (const t of media.getTracks()) pc.addTransceiver(t, {direction: 'sendonly'});
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const r = await post('/publish', {peer, sdp: pc.localDescription.sdp});
  await pc.setRemoteDescription({type: 'answer', sdp: r.sdp});
  window.pubpc = pc;
  return r.stream;
};
window.subscribe = async (peer, stream) => {
  const r = await post('/subscribe', {peer, stream});
  const pc = new RTCPeerConnection();
  const video = document.createElement('video');
  video.autoplay = true; video.muted = true; video.playsInline = true;
  document.body.appendChild(video);
  const ms = new MediaStream();
  pc.ontrack = (e) => { ms.addTrack(e.track); video.srcObject = ms; };
  await pc.setRemoteDescription({type: 'offer', sdp: r.sdp});
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered(pc);
  await post('/answer', {peer, id: r.id, sdp: pc.localDescription.sdp});
  window.subpc = pc; window.subvideo = video;
};
window.inbound = async () => {
  const out = {};
  (await window.subpc.getStats()).forEach(s => {
    if (s.type === 'inbound-rtp') out[s.kind] = {
      framesDecoded: s.framesDecoded || 0, packetsReceived: s.packetsReceived,
      packetsLost: s.packetsLost, width: s.frameWidth || 0, ssrc: s.ssrc};
  });
  return out;
};
window.outbound = async () => {
  const out = {};
  (await window.pubpc.getStats()).forEach(s => {
    if (s.type === 'outbound-rtp') out[s.kind] = {
      packetsSent: s.packetsSent, width: s.frameWidth || 0, nackCount: s.nackCount,
      pliCount: s.pliCount, target: s.targetBitrate || 0};
  });
  return out;
};
window.pixel = () => {
  const c = document.getElementById('c').getContext('2d');
  c.drawImage(window.subvideo, 0, 0, 320, 240);
  return Array.from(c.getImageData(160, 200, 1, 1).data.slice(0, 3));
};
</script></body></html>"""


@pytest.fixture(params=["port-per-connection", "one-port"])
def sfu_config(request: pytest.FixtureRequest) -> Config:
    """Both network modes: a UDP port per peer connection, and every connection on one
    port with the SFU as an ICE-lite agent (Chromium is strict about ICE-lite)."""
    return load_config(
        ice_addresses=["127.0.0.1"],
        room_grace_s=0.5,
        peer_timeout_s=5,
        ice_udp_port=0 if request.param == "one-port" else None,
    )


def room_peer(sfu: Sfu, room_name: str, peer_id: str) -> Peer:
    """The peer ``peer_id`` of the room, joined on first use (rooms close when empty:
    the room is looked up each time)."""
    room = sfu.room(room_name)
    return room.peers.get(peer_id) or room.join(peer_id)


def signalling_app(sfu: Sfu, room_name: str, page: str) -> web.Application:
    """A throw-away HTTP signalling for a test page (the real one is
    vtp.signalling.websocket): the page at /, and /publish, /subscribe, /answer, WHIP's and
    WHEP's POST, each for a peer of the room ``room_name``."""

    def peer(peer_id: str) -> Peer:
        return room_peer(sfu, room_name, peer_id)

    async def page_of(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def publish(request: web.Request) -> web.Response:
        body = json.loads(await request.text())
        try:
            pub = await peer(body["peer"]).publish(body["sdp"])
        except SfuError as exc:
            return web.Response(status=400, text=exc.message)
        return web.json_response({"stream": pub.id, "sdp": pub.answer_sdp})

    async def subscribe(request: web.Request) -> web.Response:
        body = json.loads(await request.text())
        sub = await peer(body["peer"]).subscribe(body["stream"])
        return web.json_response({"id": sub.id, "sdp": sub.offer_sdp})

    async def answer(request: web.Request) -> web.Response:
        body = json.loads(await request.text())
        await peer(body["peer"]).answer(body["id"], body["sdp"])
        return web.json_response({})

    async def whip(request: web.Request) -> web.Response:
        """WHIP's POST (RFC 9725): an SDP offer in, 201 and the SDP answer out."""
        try:
            pub = await peer(request.match_info["peer"]).publish(await request.text(), "whip")
        except SfuError as exc:
            return web.Response(status=400, text=exc.message)
        return web.Response(status=201, text=pub.answer_sdp, content_type="application/sdp")

    async def whep(request: web.Request) -> web.Response:
        """WHEP's POST: the viewer's recvonly offer in, 201 and the SDP answer out."""
        viewer = peer(request.match_info["peer"])
        try:
            sub = await viewer.subscribe(request.match_info["stream"], await request.text())
        except SfuError as exc:
            return web.Response(status=400, text=exc.message)
        return web.Response(status=201, text=sub.answer_sdp, content_type="application/sdp")

    app = web.Application()
    app.router.add_get("/", page_of)
    app.router.add_post("/whip/{peer}", whip)
    app.router.add_post("/whep/{peer}/{stream}", whep)
    app.router.add_post("/publish", publish)
    app.router.add_post("/subscribe", subscribe)
    app.router.add_post("/answer", answer)
    return app


async def serve_on(app: web.Application, *hosts: str) -> tuple[web.AppRunner, list[str]]:
    """``app`` on a free port of each host: the runner and the page's URL on each."""
    runner = web.AppRunner(app)
    await runner.setup()
    urls = []
    for host in hosts:
        site = web.TCPSite(runner, host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        literal = f"[{host}]" if ":" in host else host
        urls.append(f"http://{literal}:{port}/")
    return runner, urls


@pytest.fixture
async def signalling(sfu: Sfu) -> AsyncIterator[str]:
    """The test page and its signalling on loopback, for peers of the room "browser"."""
    runner, [url] = await serve_on(signalling_app(sfu, "browser", PAGE), "127.0.0.1")
    try:
        yield url
    finally:
        await runner.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium() as instance:
        yield instance


async def poll(page: Any, expr: str, predicate: Any, within: float = 10.0) -> Any:
    """The value of ``expr`` in ``page`` once ``predicate`` holds for it."""

    async def satisfied() -> list[Any]:
        value = await page.evaluate(expr)
        assert predicate(value), f"{expr} never satisfied the test: {value}"
        return [value]  # (truthy whatever the value)

    [value] = await eventually(satisfied, within, expr, 0.2)
    return value


async def test_aiortc_publisher_to_chromium(
    sfu: Sfu, event_log: EventLog, signalling: str, browser: Any
) -> None:
    room = sfu.room("browser")
    pub = Publisher(0)  # colour (U=60, V=200): red-orange
    try:
        stream_id = await pub.publish(room.join("teacher"))
        await eventually(lambda: bool(room.streams()), 10)
        page = await browser.new_page()
        await page.goto(signalling)
        await page.evaluate(f"window.subscribe('student', '{stream_id}')")
        stats = await poll(
            page,
            "window.inbound()",
            lambda s: (
                s.get("video", {}).get("framesDecoded", 0) > 30
                and s.get("audio", {}).get("packetsReceived", 0) > 20
            ),
            15,
        )
        assert stats["video"]["width"] == 320
        red, green, blue = await page.evaluate("window.pixel()")
        assert red > 150 and blue < 100 and red > green, (red, green, blue)
    finally:
        await pub.close()


async def test_chromium_publisher_to_aiortc_and_chromium(
    sfu: Sfu, event_log: EventLog, signalling: str, browser: Any
) -> None:
    publisher_page = await browser.new_page()
    await publisher_page.goto(signalling)
    stream_id = await publisher_page.evaluate("window.publish('teacher')")
    # (the room was created by the page's request: rooms close when empty)
    room = sfu.room("browser")
    await eventually(lambda: bool(room.streams()), 10)
    viewer = await browser.new_page()
    await viewer.goto(signalling)
    await viewer.evaluate(f"window.subscribe('student', '{stream_id}')")
    sub = Subscriber()
    try:
        await sub.subscribe(room.join("aiortc"), stream_id)
        stats = await poll(
            viewer,
            "window.inbound()",
            lambda s: (
                s.get("video", {}).get("framesDecoded", 0) > 30
                and s.get("audio", {}).get("packetsReceived", 0) > 20
            ),
            15,
        )
        assert stats["video"]["width"] > 0
        # the fake camera is not our pattern, but frames decode
        await eventually(lambda: sub.video().first_at is not None, 20)
        await eventually(lambda: sub.received["audio"].audio_frames > 20, 20)
        up = room.publication(stream_id)
        assert up is not None
        assert ("a=ice-lite" in up.answer_sdp) == (sfu.mux is not None)
        # Chromium numbers its packets transport-wide and gets the SFU's feedback
        assert "transport-cc" in up.answer_sdp and up.feedback is not None
        await eventually(lambda: up.feedback is not None and up.feedback.sent > 20, 10)
        # Chromium's sender follows the SFU's REMB: cap it, and its target drops
        video = next(t for t in up.tracks if t.kind == "video")
        uncapped = video.bitrate_for_publisher
        video.bitrate_for_publisher = lambda now: 200_000  # type: ignore[method-assign]
        out = await poll(
            publisher_page,
            "window.outbound()",
            lambda s: 0 < s.get("video", {}).get("target", 0) <= 210_000,
            10,
        )
        assert out["video"]["packetsSent"] > 0
        # lifted, the target climbs again on the transport-cc feedback
        video.bitrate_for_publisher = uncapped  # type: ignore[method-assign]
        out = await poll(
            publisher_page,
            "window.outbound()",
            lambda s: s.get("video", {}).get("target", 0) >= 400_000,
            15,
        )
        healthy = out["video"]["target"]
        # feedback that reports two packets in three lost (REMB still uncapped): only
        # the transport-cc feedback can bring the target down, so Chromium reads it
        record = up.feedback.record
        numbered = [0]

        def lossy(seq: int, media_ssrc: int, arrival_us: int) -> None:
            numbered[0] += 1
            if numbered[0] % 3 == 0:
                record(seq, media_ssrc, arrival_us)

        up.feedback.record = lossy  # type: ignore[method-assign]
        await poll(
            publisher_page,
            "window.outbound()",
            lambda s: 0 < s.get("video", {}).get("target", 0) <= healthy * 0.4,
            15,
        )
    finally:
        await sub.close()
