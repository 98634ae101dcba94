"""`vtp check`'s deployment findings (vtp.deployment): settings that leave students unable
to connect, and TURN servers probed for real (coturn, tests/turnserver.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.turnserver import Coturn, need_turnserver
from tests.web.test_https import self_signed
from vtp.config import load_config
from vtp.deployment import config_problems, turn_problems


def codes(**settings: object) -> list[str]:
    return [p.code for p in config_problems(load_config(**settings))]


def test_a_local_deployment_has_nothing_to_report() -> None:
    assert codes(host="127.0.0.1") == []
    assert codes(host="0.0.0.0", public_url="http://localhost:8080") == []


def test_public_plain_http_and_private_media_addresses_are_reported(tmp_path: Path) -> None:
    public = {
        "host": "0.0.0.0",
        "public_url": "http://class.school.example",
        "ice_udp_port": 40000,
    }
    assert codes(**public, ice_addresses=["10.0.0.5"]) == ["no_https", "announce_address"]
    announced = codes(**public, ice_addresses=["10.0.0.5"], ice_announce_address="203.0.113.9")
    assert announced == ["no_https"]
    # VTP's own certificate, or an HTTPS proxy in front (whose addresses must be trusted)
    cert, key = self_signed(tmp_path)
    tls = codes(**public, tls_cert=cert, tls_key=key, ice_announce_address="203.0.113.9")
    assert tls == []
    proxied = {**public, "public_url": "https://class.school.example"}
    assert codes(**proxied, ice_announce_address="203.0.113.9") == ["proxy_not_trusted"]
    assert codes(**proxied, ice_announce_address="203.0.113.9", trusted_proxies=["10.0.0.2"]) == []
    # a certificate that does not load; a redirect without TLS; TURN without its secret
    (tmp_path / "bad.pem").write_text("not a certificate")
    bad = codes(host="127.0.0.1", tls_cert=tmp_path / "bad.pem", tls_key=key)
    assert bad == ["tls_certificate"]
    assert codes(host="127.0.0.1", http_redirect_port=8081) == ["redirect_without_tls"]
    assert codes(host="127.0.0.1", turn_urls=["turn:127.0.0.1:3478"]) == ["turn_secret"]
    # several media ports: no ICE-TCP, no ICE restart
    several = {**public, "ice_udp_port": None, "ice_announce_address": "203.0.113.9"}
    assert codes(**several, tls_cert=cert, tls_key=key) == ["media_ports"]


async def test_turn_servers_are_probed(tmp_path: Path) -> None:
    need_turnserver()
    turn = Coturn("127.0.0.1", "a-secret", tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never answers
        closed = silent.getsockname()[1]
        try:
            config = load_config(
                turn_secret="a-secret",
                turn_urls=[
                    turn.url("udp"),
                    turn.url("tcp"),
                    f"turn:127.0.0.1:{closed}?transport=udp",
                    f"turn:127.0.0.1:{closed}?transport=tcp",
                    "turn:[::1]:9?transport=tcp",
                ],
            )
            problems = await turn_problems(config)
        finally:
            turn.stop()
    unreachable = [p.message.split(": ")[0] for p in problems]
    assert [p.code for p in problems] == ["turn_unreachable"] * 3
    assert unreachable == [
        f"turn:127.0.0.1:{closed}?transport=udp",
        f"turn:127.0.0.1:{closed}?transport=tcp",
        "turn:[::1]:9?transport=tcp",
    ]


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("turn:turn.example:3478?transport=udp", ("turn", "turn.example", 3478, "udp")),
        ("turn:turn.example", ("turn", "turn.example", 3478, "udp")),
        ("turns:turn.example:443?transport=tcp", ("turns", "turn.example", 443, "tcp")),
        ("turn:[2001:db8::1]:3479?transport=tcp", ("turn", "2001:db8::1", 3479, "tcp")),
    ],
)
def test_turn_urls_are_parsed(url: str, target: tuple[str, str, int, str]) -> None:
    from vtp.deployment import _turn_target

    assert _turn_target(url) == target


def test_ice_server_urls_must_have_their_scheme() -> None:
    from pydantic import ValidationError

    urls = ["turn:t.example:3478?transport=udp", "turns:t.example:5349?transport=tcp"]
    assert load_config(turn_urls=urls, stun_urls=["stun:s.example:3478"]).turn_urls == urls
    with pytest.raises(ValidationError, match="is not a turn: or turns: URL"):
        load_config(turn_urls=["https://t.example"])
    with pytest.raises(ValidationError, match="is not a stun: or stuns: URL"):
        load_config(stun_urls=["turn:t.example"])


def test_a_cluster_without_shared_services_or_a_reachable_node_url_is_reported() -> None:
    shared = {"redis_url": "redis://r:6379/0", "database_url": "postgresql://d/vtp"}
    assert codes(host="127.0.0.1", cluster=True, **shared) == []
    assert codes(host="127.0.0.1", cluster=True) == ["cluster_services"]
    assert codes(host="127.0.0.1", workers=2, redis_url="redis://r:6379/0") == [
        "cluster_services"  # the embedded PostgreSQL serves one process
    ]
    wildcard = {"host": "0.0.0.0", "public_url": "https://class.school.example"}
    found = codes(**wildcard, cluster=True, trusted_proxies=["10.0.0.1"], **shared)
    assert "node_url" in found
    assert "node_url" not in codes(
        **wildcard,
        cluster=True,
        trusted_proxies=["10.0.0.1"],
        node_url="http://10.0.0.5:{port}",
        **shared,
    )
