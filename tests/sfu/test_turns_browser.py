"""What Chromium accepts for TURN over TLS - why VTP hands out a turns: URL only while the
TURN server's certificate is one a CA the browser trusts vouches for (vtp.sfu.turncert):
coturn with a certificate from a CA Chromium does not know (as a self-signed one, or
Caddy's internal CA's) gives no relay candidate, only ICE candidate error 701; the same
coturn, once Chromium trusts the certificate's key, gives relay candidates at once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.sfu.certs import Ca
from tests.sfu.test_reachability_browser import spki_pin
from tests.turnserver import Coturn, need_turnserver
from vtp.config import load_config
from vtp.sfu.ice import IceSettings

CHROMIUM = os.environ.get("VTP_CHROMIUM", shutil.which("chromium") or "")
SECRET = "turns-test-secret"

# relay candidates only, gathered through the page's TURN servers
GATHER = """async (servers) => {
  const pc = new RTCPeerConnection({iceServers: servers, iceTransportPolicy: 'relay'});
  const relays = [], errors = [];
  pc.onicecandidateerror = (e) => errors.push(e.errorCode);
  pc.onicecandidate = (e) => {
    if (e.candidate && e.candidate.candidate) relays.push(e.candidate.candidate);
  };
  const complete = new Promise((done) => {
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') done(); };
  });
  pc.createDataChannel('probe');
  await pc.setLocalDescription(await pc.createOffer());
  await complete;
  pc.close();
  return {relays, errors};
}"""


async def test_chromium_relays_over_tls_only_with_a_certificate_it_trusts(tmp_path: Path) -> None:
    need_turnserver()
    if not CHROMIUM:
        pytest.skip("no Chromium")
    from playwright.async_api import async_playwright

    cert, key = Ca.create("not a CA Chromium knows").issue(tmp_path, ["localhost"])
    turn = Coturn("127.0.0.1", SECRET, tmp_path, tls=(cert, key))
    try:
        ice = IceSettings.from_config(load_config(turn_urls=[turn.url("tls")], turn_secret=SECRET))
        (server,) = ice.client_ice_servers("student")
        # the name the certificate is for (coturn listens on 127.0.0.1)
        server["urls"] = [f"turns:localhost:{turn.tls_port}?transport=tcp"]
        results = {}
        async with async_playwright() as p:
            for trusted in (False, True):
                pin = [f"--ignore-certificate-errors-spki-list={spki_pin(cert)}"]
                browser = await p.chromium.launch(
                    executable_path=CHROMIUM, args=pin if trusted else []
                )
                try:
                    page = await browser.new_page()
                    results[trusted] = await page.evaluate(GATHER, [server])
                finally:
                    await browser.close()
    finally:
        turn.stop()
    assert results[False]["relays"] == [], results
    assert 701 in results[False]["errors"], results
    assert any(" typ relay " in c for c in results[True]["relays"]), results
