"""Chromium behind school firewalls reaches the SFU (a network namespace, tests/netns.py;
the SFU on the host end of its veth): with UDP dropped it publishes and views over
ICE-TCP on the media port; with TCP to the media port dropped too, through TURN (coturn
with VTP's credentials, over UDP, TCP, or TLS when nothing but TLS to the TURN server
gets out); on an open network it uses UDP."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.netns import ClientNamespace, client_namespace
from tests.sfu.running import running_sfu
from tests.sfu.test_browser import PAGE, poll, room_peer, serve_on, signalling_app
from tests.support.chromium import CHROMIUM
from tests.support.waiting import eventually
from tests.turnserver import Coturn, need_turnserver
from tests.web.test_https import self_signed
from vtp.config import load_config
from vtp.sfu import Sfu, icetcp
from vtp.sfu.ice import IceSettings
from vtp.sfu.icerestart import restart_ice

pytestmark = [pytest.mark.browser, pytest.mark.netns]
__all__ = ["client_namespace"]  # the fixture, imported for pytest

# the test page, with the RTCConfiguration a test sets in window.rtcConfig (ICE servers)
CONFIGURABLE_PAGE = PAGE.replace(
    "new RTCPeerConnection()", "new RTCPeerConnection(window.rtcConfig || {})"
)
assert CONFIGURABLE_PAGE.count("window.rtcConfig") == 2
# with window.trickle set, descriptions go out at once, without waiting for every
# candidate (as static/app/sfu.js does: VTP's one-port agent is ICE-lite and needs none of
# the client's candidates; waiting would time the slowest blocked TURN transport instead)
CONFIGURABLE_PAGE = CONFIGURABLE_PAGE.replace(
    "function gathered(pc) {\n", "function gathered(pc) {\n  if (window.trickle) return;\n"
)
assert CONFIGURABLE_PAGE.count("window.trickle") == 1
# ICE restart when the connection drops (as static/app/sfu.js does, against this
# page's /restart, which calls vtp.sfu.icerestart like the restart-ice message)
CONFIGURABLE_PAGE = CONFIGURABLE_PAGE.replace(
    "</script>",
    """window.restarts = 0;
async function retried(path, body) {  // the network just changed: Chromium aborts requests
  for (let i = 0; ; i++) {
    try { return await post(path, body); } catch (e) {
      if (i >= 10) throw e;
      await new Promise(r => setTimeout(r, 300));
    }
  }
}
window.restartOnLoss = (name, peer, id, offerer) => {
  const pc = window[name];
  let busy = false;
  pc.addEventListener('iceconnectionstatechange', async () => {
    if (busy || !['disconnected', 'failed'].includes(pc.iceConnectionState)) return;
    busy = true;
    try {
      if (offerer) {
        await pc.setLocalDescription(await pc.createOffer({iceRestart: true}));
        const r = await retried('/restart', {peer, id});
        await pc.setRemoteDescription({type: 'answer', sdp: r.sdp});
      } else {
        const r = await retried('/restart', {peer, id});
        await pc.setRemoteDescription({type: 'offer', sdp: r.sdp});
        await pc.setLocalDescription(await pc.createAnswer());
      }
      window.restarts += 1;
    } finally { busy = false; }
  });
};
</script>""",
)

# the transport getStats says a page's connection runs over
SELECTED = """async (name) => {
  const stats = await window[name].getStats();
  let pair = null;
  stats.forEach(s => {
    if (s.type === 'transport' && s.selectedCandidatePairId)
      pair = stats.get(s.selectedCandidatePairId);
  });
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId), remote = stats.get(pair.remoteCandidateId);
  return {protocol: local.protocol, type: local.candidateType, remote: remote.protocol,
          relay: local.relayProtocol || null};
}"""


@pytest.fixture
async def sfu_on_veth(client_namespace: ClientNamespace) -> AsyncIterator[Sfu]:
    config = load_config(
        ice_addresses=[client_namespace.host_address],
        ice_udp_port=0,
        room_grace_s=0.5,
        peer_timeout_s=30,  # (the default: a moving client is silent for seconds)
    )
    async with running_sfu(config) as sfu:
        yield sfu


@pytest.fixture
async def signalling(sfu_on_veth: Sfu, client_namespace: ClientNamespace) -> AsyncIterator[str]:
    """The test page and its calls (with an ICE restart), on the veth address the client
    can reach."""
    sfu = sfu_on_veth

    async def restart(request: web.Request) -> web.Response:
        body = json.loads(await request.text())
        connection = room_peer(sfu, "tcp", body["peer"]).connections[body["id"]]
        return web.json_response({"sdp": restart_ice(connection)})

    app = signalling_app(sfu, "tcp", CONFIGURABLE_PAGE)
    app.router.add_post("/restart", restart)
    runner, [url] = await serve_on(app, client_namespace.host_address)
    try:
        yield url
    finally:
        await runner.cleanup()


def chromium_args(signalling: str) -> list[str]:
    return [
        "--use-fake-device-for-media-stream=fps=30",
        "--use-fake-ui-for-media-stream",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--autoplay-policy=no-user-gesture-required",
        # the camera needs a secure origin; this page is plain HTTP on the veth
        f"--unsafely-treat-insecure-origin-as-secure={signalling.rstrip('/')}",
    ]


@pytest.fixture
async def browser_in_namespace(
    client_namespace: ClientNamespace, signalling: str, tmp_path: Path
) -> AsyncIterator[Any]:
    if not CHROMIUM:
        pytest.skip("no Chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        instance = await p.chromium.launch(
            executable_path=client_namespace.wrapper(tmp_path, CHROMIUM),
            args=chromium_args(signalling),
        )
        try:
            yield instance
        finally:
            await instance.close()


@pytest.mark.parametrize("udp_blocked", [True, False], ids=["udp-dropped", "open"])
async def test_chromium_uses_ice_tcp_only_when_udp_is_dropped(
    sfu_on_veth: Sfu,
    client_namespace: ClientNamespace,
    signalling: str,
    browser_in_namespace: Any,
    udp_blocked: bool,
) -> None:
    sfu = sfu_on_veth
    if udp_blocked:
        client_namespace.drop("udp")  # a school firewall: no UDP out at all
    protocol = "tcp" if udp_blocked else "udp"
    publisher = await browser_in_namespace.new_page()
    await publisher.goto(signalling)
    started = time.monotonic()
    stream_id = await publisher.evaluate("window.publish('teacher')")
    room = sfu.room("tcp")
    await eventually(lambda: bool(room.streams()), 20)
    viewer = await browser_in_namespace.new_page()
    await viewer.goto(signalling)
    await viewer.evaluate(f"window.subscribe('student', '{stream_id}')")
    await poll(
        viewer,
        "window.inbound()",
        lambda s: s.get("video", {}).get("framesDecoded", 0) > 0,
        20,
    )
    first_frame_s = time.monotonic() - started
    stats = await poll(
        viewer,
        "window.inbound()",
        lambda s: (
            s.get("video", {}).get("framesDecoded", 0) > 30
            and s.get("audio", {}).get("packetsReceived", 0) > 20
        ),
        20,
    )
    assert stats["video"]["width"] > 0
    # both connections run over TCP when UDP is dropped, and over UDP when both work
    # (not relayed; Chromium's active TCP candidate learns its port from the SFU's
    # answer to its check, so it shows as peer-reflexive)
    for page, pc in ((publisher, "pubpc"), (viewer, "subpc")):
        selected = await page.evaluate(SELECTED, pc)
        assert selected["protocol"] == protocol and selected["remote"] == protocol, selected
        assert selected["type"] in ("host", "prflx"), selected
    # and on the server, every connection's path is an ICE-TCP stream, or none is
    for peer in room.peers.values():
        for connection in peer.connections.values():
            sender = connection.sender
            assert sender is not None
            assert (icetcp.stream_of(sender._pair.protocol) is not None) == udp_blocked
    print(f"{protocol}: first decoded frame {first_frame_s:.2f} s after the publisher started")


TURN_SECRET = "turn-secret-shared-with-coturn"


@pytest.mark.parametrize("relay", ["tcp", "udp"])
async def test_chromium_without_the_media_port_relays_through_turn(
    sfu_on_veth: Sfu,
    client_namespace: ClientNamespace,
    signalling: str,
    browser_in_namespace: Any,
    tmp_path: Path,
    relay: str,
) -> None:
    """The media port (UDP and TCP) is blocked: the client reaches TURN over UDP, or
    (UDP blocked altogether) over TCP, and TURN relays to the media port."""
    need_turnserver()
    sfu = sfu_on_veth
    assert sfu.mux is not None
    turn = Coturn(client_namespace.host_address, TURN_SECRET, tmp_path)
    try:
        # the credentials VTP hands a client, from the secret coturn was started with
        ice = IceSettings.from_config(
            load_config(turn_urls=[turn.url(relay)], turn_secret=TURN_SECRET)
        )
        client_namespace.drop("udp", None if relay != "udp" else sfu.mux.bound_port())
        client_namespace.drop("tcp", sfu.mux.bound_port())
        publisher = await browser_in_namespace.new_page()
        await publisher.goto(signalling)
        await publisher.evaluate(
            "(s) => { window.rtcConfig = {iceServers: s}; }", ice.client_ice_servers("teacher")
        )
        started = time.monotonic()
        stream_id = await publisher.evaluate("window.publish('teacher')")
        room = sfu.room("tcp")
        await eventually(lambda: bool(room.streams()), 20)
        viewer = await browser_in_namespace.new_page()
        await viewer.goto(signalling)
        await viewer.evaluate(
            "(s) => { window.rtcConfig = {iceServers: s}; }", ice.client_ice_servers("student")
        )
        await viewer.evaluate(f"window.subscribe('student', '{stream_id}')")
        await poll(
            viewer, "window.inbound()", lambda s: s.get("video", {}).get("framesDecoded", 0) > 0, 25
        )
        first_frame_s = time.monotonic() - started
        await poll(
            viewer,
            "window.inbound()",
            lambda s: s.get("video", {}).get("framesDecoded", 0) > 30,
            20,
        )
        for page, pc in ((publisher, "pubpc"), (viewer, "subpc")):
            selected = await page.evaluate(SELECTED, pc)
            # relayed: client to TURN over `relay`, TURN to the SFU's media port over UDP
            assert selected["type"] == "relay" and selected["relay"] == relay, selected
            assert selected["remote"] == "udp", selected
        print(
            f"TURN/{relay}: first decoded frame {first_frame_s:.2f} s after the publisher started"
        )
    finally:
        turn.stop()


@pytest.mark.parametrize("client_namespace", ["ipv6"], indirect=True)
async def test_chromium_on_an_ipv6_only_network(
    sfu_on_veth: Sfu,
    client_namespace: ClientNamespace,
    signalling: str,
    browser_in_namespace: Any,
) -> None:
    """No IPv4 at all on the client's side: the SFU gathers and announces its IPv6
    address, and Chromium publishes and views over it (UDP)."""
    sfu = sfu_on_veth
    publisher = await browser_in_namespace.new_page()
    await publisher.goto(signalling)
    stream_id = await publisher.evaluate("window.publish('teacher')")
    room = sfu.room("tcp")
    await eventually(lambda: bool(room.streams()), 20)
    up = room.publication(stream_id)
    assert up is not None and f" {client_namespace.host_address} " in up.answer_sdp
    viewer = await browser_in_namespace.new_page()
    await viewer.goto(signalling)
    await viewer.evaluate(f"window.subscribe('student', '{stream_id}')")
    await poll(
        viewer, "window.inbound()", lambda s: s.get("video", {}).get("framesDecoded", 0) > 30, 20
    )
    for page, pc in ((publisher, "pubpc"), (viewer, "subpc")):
        selected = await page.evaluate(SELECTED, pc)
        assert selected["protocol"] == "udp", selected
    for peer in room.peers.values():
        for connection in peer.connections.values():
            assert connection.sender is not None
            address = connection.sender.remote_address()
            assert address is not None and address[0] == client_namespace.client_address


async def test_a_client_whose_address_changes_recovers_by_ice_restart(
    sfu_on_veth: Sfu,
    client_namespace: ClientNamespace,
    signalling: str,
    browser_in_namespace: Any,
) -> None:
    """Mid-class the client's network changes (its address is replaced): each page
    restarts ICE on its connection and video resumes within seconds, on the same
    connections (no new subscription). The server's half of ICE restart, driven by a page
    that waits for Chromium's ICE to say "disconnected" (~6 s); the classroom client
    notices sooner and resumes its signalling socket too
    (tests/browser/test_classroom_network_change.py)."""
    sfu = sfu_on_veth
    publisher = await browser_in_namespace.new_page()
    await publisher.goto(signalling)
    stream_id = await publisher.evaluate("window.publish('teacher')")
    await publisher.evaluate(f"window.restartOnLoss('pubpc', 'teacher', '{stream_id}', true)")
    room = sfu.room("tcp")
    await eventually(lambda: bool(room.streams()), 20)
    viewer = await browser_in_namespace.new_page()
    await viewer.goto(signalling)
    await viewer.evaluate(f"window.subscribe('student', '{stream_id}')")
    student = room.peers["student"]
    (subscription_id,) = student.connections
    await viewer.evaluate(f"window.restartOnLoss('subpc', 'student', '{subscription_id}', false)")
    stats = await poll(
        viewer, "window.inbound()", lambda s: s.get("video", {}).get("framesDecoded", 0) > 30, 20
    )
    moved_to = client_namespace.client_address.rsplit(".", 1)[0] + ".3"
    client_namespace.move(moved_to)
    moved = time.monotonic()
    before = stats["video"]["framesDecoded"]
    await poll(
        viewer,
        "window.inbound()",
        lambda s: s.get("video", {}).get("framesDecoded", 0) > before + 30,
        20,
    )
    recovered_s = time.monotonic() - moved
    # (most of it is Chromium noticing: its ICE state turns "disconnected" after ~5 s)
    print(f"address change: 30 more frames decoded {recovered_s:.2f} s later")
    assert await viewer.evaluate("window.restarts") >= 1
    assert list(student.connections) == [subscription_id]  # the same subscription
    senders = [c.sender for p in room.peers.values() for c in p.connections.values()]
    assert all(
        s is not None and s.remote_address() == (moved_to, s.remote_address()[1]) for s in senders
    ), [s.remote_address() for s in senders if s]


def spki_pin(cert: Path) -> str:
    """What Chromium's --ignore-certificate-errors-spki-list takes: the base64 SHA-256 of
    the certificate's public key (it then trusts that key, and no other, for TLS - TURN
    over TLS included, whose sockets go through the browser's network stack)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


PATHS = ("udp", "ice-tcp", "turn-udp", "turn-tls")


async def test_time_to_first_frame_over_udp_ice_tcp_turn_udp_and_turn_tls(
    sfu_on_veth: Sfu, client_namespace: ClientNamespace, signalling: str, tmp_path: Path
) -> None:
    """One Chromium, one coturn (UDP, TCP and TLS listeners, a self-signed certificate
    the browser is told to trust) and the SFU; the client's firewall changes between
    runs. Each run: a publisher and a viewer page start afresh, the viewer's first
    decoded frame is timed from the publisher's start, and getStats says which path was
    taken: UDP when open; ICE-TCP when UDP is dropped; a TURN relay over UDP when the
    media port is blocked (UDP and TCP); a TURN relay over TLS when all UDP, TCP to the
    media port and TCP to TURN's plain port are dropped - TLS to TURN the only way out."""
    need_turnserver()
    if not CHROMIUM:
        pytest.skip("no Chromium")
    from playwright.async_api import async_playwright

    sfu, ns = sfu_on_veth, client_namespace
    assert sfu.mux is not None
    media_port = sfu.mux.bound_port()
    cert, key = self_signed(tmp_path, ns.host_address)
    turn = Coturn(ns.host_address, TURN_SECRET, tmp_path, tls=(cert, key))
    assert turn.tls_port is not None
    # what a deployment hands out: every TURN URL, and the client finds what works
    ice = IceSettings.from_config(
        load_config(turn_urls=[turn.url(t) for t in ("udp", "tcp", "tls")], turn_secret=TURN_SECRET)
    )
    expected = {
        "udp": {"protocol": "udp", "relay": None},
        "ice-tcp": {"protocol": "tcp", "relay": None},
        "turn-udp": {"type": "relay", "relay": "udp", "remote": "udp"},
        "turn-tls": {"type": "relay", "relay": "tls", "remote": "udp"},
    }
    times: dict[str, float] = {}
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=ns.wrapper(tmp_path, CHROMIUM),
                args=[
                    *chromium_args(signalling),
                    f"--ignore-certificate-errors-spki-list={spki_pin(cert)}",
                ],
            )
            try:
                for path in PATHS:
                    ns.allow_all()
                    if path == "ice-tcp":
                        ns.drop("udp")
                    elif path == "turn-udp":
                        ns.drop("udp", media_port)
                        ns.drop("tcp", media_port)
                        # TURN over UDP only: with TCP/TLS to TURN open too, Chromium may
                        # nominate whichever relay answers first (seen: TLS, under load)
                        ns.drop("tcp", turn.port)
                        ns.drop("tcp", turn.tls_port)
                    elif path == "turn-tls":
                        ns.drop("udp")
                        ns.drop("tcp", media_port)
                        ns.drop("tcp", turn.port)
                    servers = ice.client_ice_servers(path) if path.startswith("turn") else []
                    context = await browser.new_context()
                    publisher, viewer = await context.new_page(), await context.new_page()
                    for page in (publisher, viewer):
                        await page.goto(signalling)
                        await page.evaluate(
                            "(s) => { window.rtcConfig = {iceServers: s}; window.trickle = true; }",
                            servers,
                        )
                    started = time.monotonic()
                    stream_id = await publisher.evaluate(f"window.publish('teacher-{path}')")
                    await viewer.evaluate(f"window.subscribe('student-{path}', '{stream_id}')")
                    await poll(
                        viewer,
                        "window.inbound()",
                        lambda s: s.get("video", {}).get("framesDecoded", 0) > 0,
                        30,
                    )
                    times[path] = time.monotonic() - started
                    for page, pc in ((publisher, "pubpc"), (viewer, "subpc")):
                        selected = await page.evaluate(SELECTED, pc)
                        want = expected[path]
                        assert {k: selected[k] for k in want} == want, (path, selected)
                    await context.close()
            finally:
                await browser.close()
    finally:
        turn.stop()
    print(
        "first decoded frame after the publisher started: "
        + ", ".join(f"{path} {times[path]:.2f} s" for path in PATHS)
    )
