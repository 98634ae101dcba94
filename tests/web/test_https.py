"""HTTPS served by VTP itself (vtp.https: certificate and key, HTTP->HTTPS redirect, HSTS)
and the client address behind reverse proxies (vtp.forwarded: X-Forwarded-For believed
only from configured proxies), against the real app, PostgreSQL and Redis; Chromium
loads the classroom page over https:// with a self-signed certificate."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.sfu.certs import key_pem, pem, self_signed_builder
from tests.support.chromium import CHROMIUM
from vtp import https
from vtp.config import Config
from vtp.forwarded import resolve

PASSWORD = "a good long password"


def self_signed(directory: Path, address: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for ``address`` and localhost and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    cert = (
        self_signed_builder(key, "vtp test", start, end)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(address))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(pem(cert))
    key_path.write_bytes(key_pem(key))
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    proxies = ["10.0.0.0/8", "192.0.2.7"]
    # no proxies configured, or a peer that is not one: the header is ignored
    assert resolve("203.0.113.5", "198.51.100.1", []) == "203.0.113.5"
    assert resolve("203.0.113.5", "198.51.100.1", proxies) == "203.0.113.5"
    # from a proxy: the entry it appended (the rightmost), skipping proxies in the chain
    assert resolve("10.1.2.3", "198.51.100.1", proxies) == "198.51.100.1"
    assert resolve("10.1.2.3", "1.1.1.1, 198.51.100.1, 192.0.2.7", proxies) == "198.51.100.1"
    assert resolve("::ffff:10.1.2.3", "198.51.100.1", proxies) == "198.51.100.1"
    assert resolve("10.1.2.3", "2001:db8::1", proxies) == "2001:db8::1"
    # garbage stops the walk at the last trusted hop; every hop trusted: the leftmost
    assert resolve("10.1.2.3", "198.51.100.1, unknown", proxies) == "10.1.2.3"
    assert resolve("10.1.2.3", "10.9.9.9, 10.8.8.8", proxies) == "10.9.9.9"
    assert resolve("10.1.2.3", None, proxies) == "10.1.2.3"
    assert resolve(None, "198.51.100.1", proxies) == "unknown"


@pytest.mark.parametrize("trusted", [False, True], ids=["direct", "behind-proxy"])
async def test_login_limit_keys_on_forwarded_address_only_from_a_proxy(
    aiohttp_client: Any, config: Config, trusted: bool
) -> None:
    from vtp.app import create_app

    app_config = config.model_copy(
        update={
            "login_ip_max_attempts": 2,
            "trusted_proxies": ["127.0.0.1"] if trusted else [],
        }
    )
    client = await aiohttp_client(create_app(app_config))
    statuses = []
    for i in range(3):  # three addresses (as forwarded), three accounts, wrong passwords
        resp = await client.post(
            "/api/v1/auth/login",
            json={"email": f"nobody{i}@school.example", "password": PASSWORD},
            headers={"X-Forwarded-For": f"198.51.100.{i + 1}"},
        )
        statuses.append(resp.status)
    # a client forging the header from its own address is still one address
    assert statuses == ([401, 401, 401] if trusted else [401, 401, 429]), statuses


@pytest.fixture
async def tls_server(config: Config, tmp_path: Path) -> AsyncIterator[tuple[str, int, Path]]:
    """The app over HTTPS on a loopback port, with the redirect listener and HSTS."""
    from vtp.app import create_app

    cert, key = self_signed(tmp_path)
    port, redirect_port = free_port(), free_port()
    tls_config = config.model_copy(
        update={
            "host": "127.0.0.1",
            "port": port,
            "tls_cert": cert,
            "tls_key": key,
            "http_redirect_port": redirect_port,
            "hsts_max_age_s": 31536000,
        }
    )
    runner = web.AppRunner(create_app(tls_config))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=https.server_context(tls_config))
    await site.start()
    try:
        yield f"https://127.0.0.1:{port}", redirect_port, cert
    finally:
        await runner.cleanup()


async def test_https_serves_the_api_redirects_http_and_sets_hsts(
    tls_server: tuple[str, int, Path],
) -> None:
    base, redirect_port, cert = tls_server
    trust = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/health", ssl=trust) as resp:
            assert resp.status == 200
            assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
        email = f"tls-{uuid.uuid4().hex[:6]}@school.example"
        async with http.post(
            f"{base}/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "display_name": "Tess"},
            ssl=trust,
        ) as resp:
            assert resp.status == 201, await resp.text()
        # plain HTTP: the redirect port sends every path (and query) to HTTPS
        async with http.get(
            f"http://127.0.0.1:{redirect_port}/signin?next=/dashboard", allow_redirects=False
        ) as resp:
            assert resp.status == 308
            assert resp.headers["Location"] == f"{base}/signin?next=/dashboard"
            assert "Strict-Transport-Security" not in resp.headers  # never over plain HTTP
        # and plain HTTP on the TLS port is not served
        with pytest.raises(aiohttp.ClientError):
            async with http.get(base.replace("https", "http") + "/health") as resp:
                await resp.read()


@pytest.mark.browser
async def test_chromium_loads_the_classroom_over_https(tls_server: tuple[str, int, Path]) -> None:
    if not CHROMIUM:
        pytest.skip("no Chromium")
    from playwright.async_api import async_playwright

    base, _, _ = tls_server
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            # the test's own self-signed certificate (a real one needs no flag)
            args=["--ignore-certificate-errors", "--use-fake-ui-for-media-stream"],
        )
        try:
            page = await browser.new_page()
            response = await page.goto(f"{base}/classroom/{uuid.uuid4()}")
            assert response is not None and response.status == 200
            assert response.headers["strict-transport-security"] == "max-age=31536000"
            secure = await page.evaluate(
                "[location.protocol, window.isSecureContext, !!navigator.mediaDevices]"
            )
            assert secure == ["https:", True, True]
            # the page's own origin serves the API over the same TLS listener
            status = await page.evaluate(
                """async (email) => (await fetch('/api/v1/auth/register', {
                    method: 'POST', headers: {'Content-Type': 'application/json'},
                    body: JSON.stringify({email, password: 'a good long password',
                                          display_name: 'Page'})})).status""",
                f"page-{uuid.uuid4().hex[:6]}@school.example",
            )
            assert status == 201
        finally:
            await browser.close()
