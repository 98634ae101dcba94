"""TURN over TLS in docker-compose, run for real without Docker: Debian's caddy obtains a
certificate (``tls internal``, with the repository's Caddyfile) into its data folder as
the caddy service does; deploy/turn-tls-sync.sh (service turn-tls) hands it to coturn's
user; deploy/coturn.sh (service coturn), run as that unprivileged user (65534, the coturn
image's nobody) around Debian's turnserver, serves TURN without TLS until the
certificate is there, then restarts once with the TLS listener, and reloads a renewal in
place (the same turnserver process). VTP's check (vtp.sfu.turncert) accepts the same file
for the domain when Caddy's CA is the one trusted."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.sfu.certs import Ca
from tests.support.caddy import DOMAIN, caddy
from tests.support.ports import tcp_answers
from tests.turnserver import TURNSERVER, need_turnserver
from vtp.sfu.turncert import TurnCertificate

ROOT = Path(__file__).resolve().parents[1]
COTURN_USER = 65534  # docker-compose.yml: coturn's user, turn-tls's TURN_TLS_OWNER


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def served_certificate(port: int, trust: Path) -> bytes | None:
    """The DER certificate a TLS client trusting ``trust`` sees for DOMAIN, or None."""
    context = ssl.create_default_context(cafile=str(trust))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
            context.wrap_socket(raw, server_hostname=DOMAIN) as tls,
        ):
            return tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None


def pem_der(path: Path) -> bytes:
    """The first certificate of a PEM chain (the server's own), as DER."""
    leaf = x509.load_pem_x509_certificates(path.read_bytes())[0]
    return leaf.public_bytes(serialization.Encoding.DER)


@pytest.fixture
def caddy_data(tmp_path: Path) -> Path:
    """Caddy's data folder (the compose volume caddydata) once Caddy has the certificate
    for DOMAIN from its internal CA."""
    with caddy(
        tmp_path, upstream="127.0.0.1:9", https_port=free_port(), http_port=free_port()
    ) as server:
        leaf = server.data / "caddy" / "certificates" / "local" / DOMAIN / f"{DOMAIN}.crt"
        wait_for(f"caddy's certificate ({server.log.read_text()[-500:]})", leaf.exists)
    return server.data


@pytest.fixture
def shared() -> Iterator[Path]:
    """The turntls volume: a folder coturn's user can reach (pytest's tmp_path is not)."""
    base = Path(tempfile.mkdtemp(prefix="vtp-turntls-"))
    base.chmod(0o755)
    try:
        yield base / "turn-tls"
    finally:
        shutil.rmtree(base)


def sync(caddy_data: Path, out: Path) -> None:
    subprocess.run(
        ["sh", str(ROOT / "deploy" / "turn-tls-sync.sh")],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "VTP_DOMAIN": DOMAIN,
            "CADDY_DATA": str(caddy_data),
            "TURN_TLS_DIR": str(out),
            "TURN_TLS_OWNER": f"{COTURN_USER}:{COTURN_USER}",
            "TURN_TLS_INTERVAL_S": "0",
        },
        check=True,
        timeout=30,
    )


def turnserver_pid(wrapper: int) -> int | None:
    children = Path(f"/proc/{wrapper}/task/{wrapper}/children").read_text().split()
    for child in children:
        if Path(f"/proc/{child}/comm").read_text().strip() == "turnserver":
            return int(child)
    return None


def test_coturn_serves_tls_with_caddys_certificate_and_reloads_renewals(
    caddy_data: Path, shared: Path, tmp_path: Path
) -> None:
    need_turnserver()
    if os.geteuid() != 0:
        pytest.skip("runs coturn as its compose user (65534): needs root")
    plain, tls_port = free_port(), free_port()
    relay = 20000 + int.from_bytes(os.urandom(2)) % 20000
    log = tmp_path / "coturn.log"
    with log.open("wb") as out:
        wrapper = subprocess.Popen(
            [
                "sh",
                str(ROOT / "deploy" / "coturn.sh"),
                *("-n", "--listening-ip=127.0.0.1", f"--listening-port={plain}"),
                *("--use-auth-secret", "--static-auth-secret=test-secret", "--realm=vtp"),
                *(f"--min-port={relay}", f"--max-port={relay + 10}"),
                *("--no-cli", "--no-dtls", "--log-file=stdout", "--fingerprint"),
            ],
            env={
                "PATH": str(Path(TURNSERVER).parent) + ":/usr/bin:/bin",
                "TURN_TLS_DIR": str(shared),
                "TURN_TLS_PORT": str(tls_port),
                "TURN_TLS_POLL_S": "0.2",
            },
            cwd=shared.parent,
            user=COTURN_USER,
            group=COTURN_USER,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # no certificate yet: TURN over UDP and TCP only
        wait_for("coturn's plain port", lambda: tcp_answers(plain))
        assert not tcp_answers(tls_port)
        first = turnserver_pid(wrapper.pid)

        sync(caddy_data, shared)
        caddy_leaf = caddy_data / "caddy" / "certificates" / "local" / DOMAIN / f"{DOMAIN}.crt"
        assert (shared / "cert.pem").read_bytes() == caddy_leaf.read_bytes()
        for name, mode in (("cert.pem", 0o444), ("key.pem", 0o400)):
            stat = (shared / name).stat()
            assert (stat.st_uid, stat.st_gid, stat.st_mode & 0o777) == (
                COTURN_USER,
                COTURN_USER,
                mode,
            ), name
        caddy_root = caddy_data / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        wait_for(
            "TURN over TLS with Caddy's certificate",
            lambda: served_certificate(tls_port, caddy_root) == pem_der(caddy_leaf),
        )
        second = turnserver_pid(wrapper.pid)
        assert second is not None and second != first  # restarted once, with TLS
        # what VTP hands out: turns: for the domain, with Caddy's CA the trusted one
        assert TurnCertificate(shared / "cert.pem", caddy_root).serves(DOMAIN)
        assert not TurnCertificate(shared / "cert.pem").serves(DOMAIN)  # (an internal CA)

        # a renewal (here from another CA): coturn reloads it, the same process on
        ca = Ca.create()
        renewed, renewed_key = ca.issue(tmp_path, [DOMAIN])
        shutil.copy(renewed, caddy_leaf)
        shutil.copy(renewed_key, caddy_leaf.with_suffix(".key"))
        sync(caddy_data, shared)
        trust = ca.write(tmp_path / "ca.pem")
        wait_for(
            "the renewed certificate",
            lambda: served_certificate(tls_port, trust) == pem_der(renewed),
        )
        assert turnserver_pid(wrapper.pid) == second
        assert tcp_answers(plain)
        assert b"Reloading TLS certificates" in log.read_bytes()
        # a sync with nothing new changes nothing
        serial = (shared / "serial").read_bytes()
        sync(caddy_data, shared)
        assert (shared / "serial").read_bytes() == serial
    finally:
        wrapper.terminate()
        try:
            assert wrapper.wait(10) == 0
        finally:
            if wrapper.poll() is None:
                wrapper.kill()
    assert not tcp_answers(plain)
