"""Caddy run as the compose service runs it (deploy/Caddyfile, ``tls internal``, its CA
kept out of this machine's trust store), for the proxy's tests (tests/web/test_caddy.py)
and TURN over TLS with Caddy's certificate (tests/test_turn_tls.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CADDY = shutil.which("caddy") or ""
DOMAIN = "vtp.test"  # (resolved to loopback by the tests' clients, never by DNS)


def need_caddy() -> str:
    """The caddy binary; the test is skipped without it (failed on CI)."""
    if not CADDY:
        if os.environ.get("CI"):
            pytest.fail("caddy is not installed")
        pytest.skip("caddy is not installed (Debian: apt-get install caddy)")
    return CADDY


@dataclass
class Caddy:
    process: subprocess.Popen[bytes]
    data: Path  # XDG_DATA_HOME: its CA and certificates (the compose volume caddydata)
    log: Path

    def tail(self) -> str:
        return self.log.read_text()[-2000:]


@contextlib.contextmanager
def caddy(tmp_path: Path, *, upstream: str, https_port: int, http_port: int) -> Iterator[Caddy]:
    """Caddy serving DOMAIN on these loopback ports in front of ``upstream``; stopped (and
    killed if it does not stop) at the end."""
    data = tmp_path / "caddy-data"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(data),
        "XDG_CONFIG_HOME": str(tmp_path / "caddy-config"),
        "VTP_DOMAIN": DOMAIN,
        "CADDY_UPSTREAM": upstream,
        "CADDY_HTTPS_PORT": str(https_port),
        "CADDY_HTTP_PORT": str(http_port),
        "CADDY_TLS": "tls internal",
        "CADDY_ADMIN": "off",
        "CADDY_GLOBAL": "skip_install_trust",
    }
    log = tmp_path / "caddy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [need_caddy(), "run", "--config", str(ROOT / "deploy" / "Caddyfile")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Caddy(process, data, log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
