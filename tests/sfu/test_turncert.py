"""turns: URLs go to clients only while the TURN server's certificate is one browsers
accept for the URL's host (VTP_TURN_TLS_CERT, vtp.sfu.turncert): valid now, for that
name, from a trusted CA. Anything else - no file yet, another name, an unknown CA (a
self-signed or Caddy-internal one), expired - leaves them out, and `vtp check` says why."""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
from pathlib import Path

import pytest

from tests.sfu.certs import Ca
from vtp.config import load_config
from vtp.deployment import config_problems
from vtp.sfu.ice import IceSettings
from vtp.sfu.turncert import TurnCertificate, turns_host

HOST = "turn.school.example"
URLS = [
    f"turn:{HOST}:3478?transport=udp",
    f"turn:{HOST}:3478?transport=tcp",
    f"turns:{HOST}:5349?transport=tcp",
]


@pytest.fixture
def ca(tmp_path: Path) -> Ca:
    return Ca.create()


@pytest.fixture
def trust(ca: Ca, tmp_path: Path) -> Path:
    return ca.write(tmp_path / "trusted.pem")


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("turns:turn.example:5349?transport=tcp", "turn.example"),
        ("turns:turn.example", "turn.example"),
        ("turns:[2001:db8::1]:5349", "2001:db8::1"),
        ("turn:turn.example:3478", None),
    ],
)
def test_turns_host(url: str, host: str | None) -> None:
    assert turns_host(url) == host


def test_a_trusted_certificate_for_the_host_serves_it(ca: Ca, trust: Path, tmp_path: Path) -> None:
    cert, _ = ca.issue(tmp_path, [HOST])
    served = TurnCertificate(cert, trust)
    assert served.why_not(HOST) is None
    reason = served.why_not("other.example")
    assert reason is not None and "other.example" in reason


def test_an_unknown_ca_or_an_expired_certificate_serves_nothing(
    ca: Ca, trust: Path, tmp_path: Path
) -> None:
    stranger = Ca.create("Caddy Local Authority")  # (what "tls internal" signs with)
    cert, _ = stranger.issue(tmp_path, [HOST], stem="internal")
    assert not TurnCertificate(cert, trust).serves(HOST)
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=20)
    expired, _ = ca.issue(tmp_path, [HOST], valid_from=old, days=10, stem="expired")
    reason = TurnCertificate(expired, trust).why_not(HOST)
    assert reason is not None and "valid from" in reason


def test_the_file_is_read_again_when_it_changes(ca: Ca, trust: Path, tmp_path: Path) -> None:
    """No file (coturn has none yet), then Caddy's certificate arrives, then a renewal
    for another name: each answer follows the file."""
    target = tmp_path / "turn-tls" / "cert.pem"
    served = TurnCertificate(target, trust)
    reason = served.why_not(HOST)
    assert reason is not None and "no certificate" in reason
    target.parent.mkdir()
    good, _ = ca.issue(tmp_path, [HOST], stem="good")
    shutil.copy(good, target)
    assert served.serves(HOST)
    other, _ = ca.issue(tmp_path, ["elsewhere.example"], stem="other")
    shutil.copy(other, target)
    stat = target.stat()  # (the same size and second: the stamp is in nanoseconds)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1000))
    assert not served.serves(HOST)
    assert served.serves("elsewhere.example")


def test_clients_get_turns_only_while_it_is_served(ca: Ca, trust: Path, tmp_path: Path) -> None:
    target = tmp_path / "cert.pem"
    config = load_config(turn_urls=URLS, turn_secret="s" * 32, turn_tls_cert=target)
    ice = IceSettings.from_config(config)
    assert ice.turn_tls is not None
    ice = dataclasses.replace(ice, turn_tls=TurnCertificate(target, trust))

    def urls() -> object:
        (server,) = ice.client_ice_servers("user-1")
        return server["urls"]

    assert urls() == URLS[:2]
    cert, _ = ca.issue(tmp_path, [HOST])
    shutil.copy(cert, target)
    assert urls() == URLS
    # without VTP_TURN_TLS_CERT: every URL, as configured
    plain = IceSettings.from_config(load_config(turn_urls=URLS, turn_secret="s" * 32))
    assert plain.client_ice_servers("user-1")[0]["urls"] == URLS


def test_vtp_check_says_why_turns_is_not_served(tmp_path: Path) -> None:
    config = load_config(
        host="127.0.0.1",
        turn_urls=URLS,
        turn_secret="s" * 32,
        turn_tls_cert=tmp_path / "missing.pem",
    )
    problems = [p for p in config_problems(config) if p.code == "turns_not_served"]
    assert len(problems) == 1, problems
    assert URLS[2] in problems[0].message and "no certificate" in problems[0].message
