"""coturn (Debian's ``turnserver``) for tests: a TURN server on one address, with
time-limited credentials from the same secret VTP uses (``use-auth-secret``), as
docker-compose runs it. Tests skip without it unless CI is set (scripts/test.sh
installs coturn)."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

TURNSERVER = shutil.which("turnserver") or ""


def need_turnserver() -> None:
    if not TURNSERVER:
        if os.environ.get("CI"):
            pytest.fail("coturn (turnserver) is not installed")
        pytest.skip("coturn (turnserver) is not installed")


class Coturn:
    """``turnserver`` listening on ``address:port`` (UDP and TCP) - and with ``tls`` (a
    PEM certificate and key) on ``address:tls_port`` for TURN over TLS - relaying from
    ``address`` in a small port range; stopped by :meth:`stop`."""

    def __init__(
        self, address: str, secret: str, directory: Path, tls: tuple[Path, Path] | None = None
    ) -> None:
        self.address = address
        self.secret = secret
        self.port = _free_port(address)
        self.tls_port = _free_port(address) if tls is not None else None
        if tls is None:
            listeners = ["--no-tls"]
        else:
            listeners = [f"--tls-listening-port={self.tls_port}"]
            listeners += [f"--cert={tls[0]}", f"--pkey={tls[1]}"]
        low = random.randrange(50000, 59000, 100)
        self.log = directory / "turnserver.log"
        self.process = subprocess.Popen(
            [
                TURNSERVER,
                "-n",  # no configuration file
                f"--listening-ip={address}",
                f"--listening-port={self.port}",
                f"--relay-ip={address}",
                f"--min-port={low}",
                f"--max-port={low + 99}",
                "--use-auth-secret",
                f"--static-auth-secret={secret}",
                "--realm=vtp.test",
                *listeners,
                "--no-dtls",
                "--no-cli",
                "--fingerprint",
                f"--log-file={self.log}",
                "--simple-log",
                f"--pidfile={directory / 'turnserver.pid'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not all(_open(address, p) for p in (self.port, self.tls_port) if p is not None):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"turnserver did not start: {self.tail()}")
            time.sleep(0.05)

    def url(self, transport: str) -> str:
        """A TURN URL for ``transport``: udp, tcp, or tls (``turns:``, on the TLS port)."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        if transport == "tls":
            assert self.tls_port is not None, "started without a certificate"
            return f"turns:{host}:{self.tls_port}?transport=tcp"
        return f"turn:{host}:{self.port}?transport={transport}"

    def tail(self) -> str:
        try:
            return self.log.read_text()[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.2):
            return True
    except OSError:
        return False
