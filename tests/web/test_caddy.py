"""VTP behind a real Caddy (Debian's ``caddy``) run with the Caddyfile docker-compose
uses (deploy/Caddyfile), its certificate from Caddy's own CA (``tls internal``) in place
of a public one: HTTPS with HTTP redirected, WebSocket upgrades passed, and the client's
address forwarded in X-Forwarded-For - believed by VTP (VTP_TRUSTED_PROXIES) while a
client's own forged header is not. Chromium loads the classroom over it. Skips without
Caddy unless CI is set (scripts/test.sh installs it)."""

from __future__ import annotations

import socket
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from tests.support.caddy import DOMAIN, caddy
from tests.support.chromium import CHROMIUM
from tests.support.ports import tcp_answers
from vtp.config import Config

PASSWORD = "a good long password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proxy:
    https_port: int
    http_port: int
    root_ca: Path  # Caddy's local CA, which signed the site's certificate

    @property
    def base(self) -> str:
        return f"https://{DOMAIN}:{self.https_port}"


class Loopback(AbstractResolver):
    """Every name is 127.0.0.1 (the test's stand-in for DNS)."""

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        pass


def session(proxy: Proxy, source: str) -> aiohttp.ClientSession:
    """A client on ``source`` (a loopback address of its own) trusting Caddy's CA."""
    trust = ssl.create_default_context(cafile=str(proxy.root_ca))
    connector = aiohttp.TCPConnector(ssl=trust, resolver=Loopback(), local_addr=(source, 0))
    return aiohttp.ClientSession(connector=connector)


@pytest.fixture
async def upstream(config: Config) -> AsyncIterator[int]:
    """VTP on a loopback port, believing X-Forwarded-For from the proxy (127.0.0.1)."""
    from vtp.app import create_app

    port = free_port()
    app_config = config.model_copy(
        update={
            "host": "127.0.0.1",
            "port": port,
            "trusted_proxies": ["127.0.0.1"],
            "public_url": f"https://{DOMAIN}",
            "login_ip_max_attempts": 2,
        }
    )
    runner = web.AppRunner(create_app(app_config))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


@pytest.fixture
def proxy(upstream: int, tmp_path: Path) -> Iterator[Proxy]:
    https_port, http_port = free_port(), free_port()
    with caddy(
        tmp_path, upstream=f"127.0.0.1:{upstream}", https_port=https_port, http_port=http_port
    ) as server:
        root_ca = server.data / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        deadline = time.monotonic() + 20
        while not (tcp_answers(https_port) and root_ca.exists()):
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"caddy did not start: {server.tail()}")
            time.sleep(0.05)
        yield Proxy(https_port, http_port, root_ca)


async def _login(http: aiohttp.ClientSession, base: str, email: str, **kw: Any) -> int:
    async with http.post(
        f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, **kw
    ) as resp:
        return resp.status


async def test_https_redirect_websocket_and_forwarded_address_through_caddy(
    proxy: Proxy,
) -> None:
    base = proxy.base
    async with session(proxy, "127.0.0.5") as http:
        # HTTPS with a certificate from Caddy's CA (verified against it)
        async with http.get(f"{base}/health") as resp:
            assert resp.status == 200
        # plain HTTP is redirected to HTTPS
        async with http.get(
            f"http://{DOMAIN}:{proxy.http_port}/signin?next=/x", allow_redirects=False
        ) as resp:
            assert resp.status in (301, 308), resp.status
            assert resp.headers["Location"].startswith(f"https://{DOMAIN}")
            assert resp.headers["Location"].endswith("/signin?next=/x")
        # a client forging X-Forwarded-For is still one address: Caddy replaces the header
        statuses = [
            await _login(
                http,
                base,
                f"nobody{i}@school.example",
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
            for i in range(3)
        ]
        assert statuses == [401, 401, 429], statuses
    # and VTP sees the client's address, not the proxy's: another client is not limited
    async with session(proxy, "127.0.0.6") as other:
        assert await _login(other, base, "nobody9@school.example") == 401
        # a WebSocket upgrade goes through: SFU signalling authenticates
        email = f"caddy-{uuid.uuid4().hex[:6]}@school.example"
        async with other.post(
            f"{base}/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "display_name": "Cad"},
        ) as resp:
            assert resp.status == 201, await resp.text()
    async with session(proxy, "127.0.0.7") as third:
        async with third.post(
            f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD}
        ) as resp:
            assert resp.status == 200, await resp.text()
            token = (await resp.json())["access_token"]
        async with third.ws_connect(f"wss://{DOMAIN}:{proxy.https_port}/api/v1/sfu/ws") as ws:
            await ws.send_json({"type": "auth", "token": token})
            reply = await ws.receive_json(timeout=10)
            assert reply["type"] == "authenticated", reply


@pytest.mark.browser
async def test_chromium_loads_the_classroom_through_caddy(proxy: Proxy) -> None:
    if not CHROMIUM:
        pytest.skip("no Chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                f"--host-resolver-rules=MAP {DOMAIN} 127.0.0.1",
                # Caddy's internal CA is not in the browser's store (a real domain's
                # certificate needs no flag)
                "--ignore-certificate-errors",
                "--use-fake-ui-for-media-stream",
            ],
        )
        try:
            page = await browser.new_page()
            response = await page.goto(f"{proxy.base}/classroom/{uuid.uuid4()}")
            assert response is not None and response.status == 200
            secure = await page.evaluate(
                "[location.protocol, window.isSecureContext, !!navigator.mediaDevices]"
            )
            assert secure == ["https:", True, True]
            # the page's signalling WebSocket, upgraded through the proxy
            reply = await page.evaluate(
                """() => new Promise((resolve, reject) => {
                    const ws = new WebSocket(`wss://${location.host}/api/v1/sfu/ws`);
                    ws.onopen = () => ws.send(JSON.stringify({type: 'auth', token: 'bad'}));
                    ws.onmessage = (e) => resolve(JSON.parse(e.data));
                    ws.onerror = () => reject(new Error('websocket failed'));
                })"""
            )
            assert reply["type"] == "error", reply  # VTP itself answered, over the upgrade
        finally:
            await browser.close()
