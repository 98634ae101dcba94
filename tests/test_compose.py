"""docker-compose.yml is valid (`docker-compose config -q`) and describes the stack:
PostgreSQL 15, Redis 7, MinIO, pgAdmin and VTP, each with a health check, named
volumes and one network, coturn, and Caddy in front (profile "proxy"). No Docker engine
is needed for any of this; tests/web/test_caddy.py runs the same Caddyfile for real."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("postgres", "redis", "minio", "pgadmin", "vtp")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def compose_binary() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        message = (
            "docker-compose is not installed (Debian: apt-get install --no-install-recommends "
            "docker-compose; scripts/test.sh does it)"
        )
        if _in_ci():
            pytest.fail(message + "; CI must validate the compose file")
        pytest.skip(message)
    return binary


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the files compose reads, with a .env made from .env.example (the real
    .env, if any, is never read: it may hold secrets and differs per machine)."""
    target = tmp_path_factory.mktemp("compose")
    for name in ("docker-compose.yml", "Dockerfile", ".dockerignore", ".env.example"):
        shutil.copy2(ROOT / name, target / name)
    shutil.copy2(ROOT / ".env.example", target / ".env")
    (target / "deploy").mkdir()
    shutil.copy2(ROOT / "deploy" / "Caddyfile", target / "deploy" / "Caddyfile")
    shutil.copy2(ROOT / "deploy" / "Caddyfile.cluster", target / "deploy" / "Caddyfile.cluster")
    return target


def _compose_env() -> dict[str, str]:
    # Variables from the caller's shell would override .env: keep only what
    # docker-compose itself needs to run.
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {name: os.environ[name] for name in keep if name in os.environ}


def _run(binary: str, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            binary,
            "--project-directory",
            str(project),
            "-f",
            str(project / "docker-compose.yml"),
            *args,
        ],
        cwd=project,
        env=_compose_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compose_file_is_valid(compose_binary: str, project: Path) -> None:
    result = _run(compose_binary, project, "config", "-q")
    assert result.returncode == 0, result.stderr or result.stdout


def test_compose_file_is_invalid_without_env_file(compose_binary: str, project: Path) -> None:
    """The app reads .env: the README's `cp .env.example .env` step is needed (this also
    shows the validation really reads the file)."""
    (project / ".env").rename(project / ".env.moved")
    try:
        result = _run(compose_binary, project, "config", "-q")
    finally:
        (project / ".env.moved").rename(project / ".env")
    assert result.returncode != 0


@pytest.fixture(scope="module")
def resolved(compose_binary: str, project: Path) -> dict[str, Any]:
    """The configuration as docker-compose resolves it (defaults filled in)."""
    result = _run(compose_binary, project, "config")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return config


def test_services_and_health_checks(raw: dict[str, Any]) -> None:
    services = raw["services"]
    for name in SERVICES:
        assert name in services, f"service {name} missing"
        check = services[name].get("healthcheck")
        assert check and check.get("test"), f"service {name} has no health check"
        assert not check.get("disable"), f"service {name} disables its health check"


def test_images_and_versions(raw: dict[str, Any]) -> None:
    services = raw["services"]
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["minio"]["image"].startswith("minio/minio")
    assert services["pgadmin"]["image"].startswith("dpage/pgadmin4")
    assert services["vtp"]["build"]["dockerfile"] == "Dockerfile"
    # MinIO serves both the S3 API and its console.
    command = " ".join(services["minio"]["command"])
    assert "--console-address" in command


def test_one_network_and_named_volumes(resolved: dict[str, Any], project: Path) -> None:
    assert list(resolved["networks"]) == ["vtp"]
    named = set(resolved["volumes"])
    for name, service in resolved["services"].items():
        assert list(service.get("networks", {})) == ["vtp"], f"{name} is not on the vtp network"
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                source, read_only = volume["source"], bool(volume.get("read_only"))
            else:
                source, read_only = volume.split(":")[0], volume.endswith(":ro")
            if source.startswith("/"):
                # data lives in named volumes; only configuration from the repository's
                # deploy/ folder is mounted from the host, read-only
                assert Path(source).parent == project / "deploy" and read_only, (name, volume)
                continue
            assert source in named, f"{name} mounts {source}, not a named volume"
    for name in ("postgres", "redis", "minio", "pgadmin", "vtp"):
        assert resolved["services"][name].get("volumes"), f"{name} keeps no data in a volume"


def test_app_reads_env_file_and_uses_the_stack(
    raw: dict[str, Any], resolved: dict[str, Any]
) -> None:
    env_file = raw["services"]["vtp"].get("env_file")
    env_files = [env_file] if isinstance(env_file, str) else (env_file or [])
    assert ".env" in env_files, env_files
    app = resolved["services"]["vtp"]
    env = app["environment"]
    assert env["DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["VTP_S3_ENDPOINT"] == "http://minio:9000"
    assert env["VTP_HOST"] == "0.0.0.0"
    # Credentials VTP uses are the ones MinIO and PostgreSQL were started with.
    minio = resolved["services"]["minio"]["environment"]
    assert env["VTP_S3_ACCESS_KEY"] == minio["MINIO_ROOT_USER"]
    assert env["VTP_S3_SECRET_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    postgres = resolved["services"]["postgres"]["environment"]
    assert f":{postgres['POSTGRES_PASSWORD']}@" in env["DATABASE_URL"]
    depends = app["depends_on"]
    for name in ("postgres", "redis", "minio"):
        assert depends[name]["condition"] == "service_healthy"


def test_media_udp_port_is_published(raw: dict[str, Any]) -> None:
    app = raw["services"]["vtp"]
    port = app["environment"]["VTP_ICE_UDP_PORT"]
    assert "VTP_ICE_PORT_MIN" not in app["environment"]  # the two modes are exclusive
    udp = [p for p in app["ports"] if str(p).endswith("/udp")]
    assert any(str(p).endswith(f":{port}:{port}/udp") for p in udp), udp
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"VTP_ICE_UDP_PORT={port}" in dockerfile and "VTP_ICE_PORT_MIN" not in dockerfile
    assert f"EXPOSE {port}/udp" in dockerfile
    # ICE over TCP on the same port number, for networks that drop UDP
    assert any(str(p).endswith(f":{port}:{port}/tcp") for p in app["ports"]), app["ports"]
    assert f"{port}/tcp" in dockerfile


def test_turn_server_shares_vtp_secret_and_is_published(resolved: dict[str, Any]) -> None:
    coturn = resolved["services"]["coturn"]
    env = resolved["services"]["vtp"]["environment"]
    command = coturn["command"]
    assert "--use-auth-secret" in command
    assert f"--static-auth-secret={env['VTP_TURN_SECRET']}" in command
    announce = env["VTP_ICE_ANNOUNCE_ADDRESS"]
    assert f"--external-ip={announce}" in command
    urls = env["VTP_TURN_URLS"].split(",")
    assert urls[:2] == [
        f"turn:{announce}:3478?transport=udp",
        f"turn:{announce}:3478?transport=tcp",
    ]
    ports = [str(p) for p in coturn["ports"]]
    for protocol in ("udp", "tcp"):
        assert any(p.endswith(f":3478:3478/{protocol}") for p in ports), ports


def test_dockerfile_shape() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) >= 2, "the Dockerfile must be multi-stage"
    assert "slim" in text
    assert "\nUSER " in text and "USER root" not in text
    assert "HEALTHCHECK" in text and "/health" in text
    assert "EXPOSE 8080" in text
    assert 'CMD ["vtp", "serve"]' in text
    assert "VTP_HOST=0.0.0.0" in text


def test_caddy_proxy_profile_fronts_vtp(raw: dict[str, Any], resolved: dict[str, Any]) -> None:
    """Caddy (profile "proxy") terminates HTTPS for VTP_DOMAIN with the repository's
    Caddyfile, proxies to VTP's port, and is the one address VTP believes
    X-Forwarded-For from."""
    caddy = resolved["services"]["caddy"]
    assert raw["services"]["caddy"]["profiles"] == ["proxy"]
    assert "proxy" not in raw["services"]["vtp"].get("profiles", [])  # VTP always runs
    assert caddy["image"].startswith("caddy:2")
    mounts = [str(v) for v in raw["services"]["caddy"]["volumes"]]
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in mounts
    env = caddy["environment"]
    vtp_env = resolved["services"]["vtp"]["environment"]
    assert env["CADDY_UPSTREAM"] == f"vtp:{vtp_env['VTP_PORT']}"
    assert env["VTP_DOMAIN"]
    ports = [str(p) for p in raw["services"]["caddy"]["ports"]]
    for port in ("80:80", "443:443", "443:443/udp"):
        assert any(p.endswith(port) for p in ports), ports
    address = caddy["networks"]["vtp"]["ipv4_address"]
    assert vtp_env["VTP_TRUSTED_PROXIES"] == address
    subnet = resolved["networks"]["vtp"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet)
    assert caddy["depends_on"]["vtp"]["condition"] == "service_healthy"
    assert caddy["healthcheck"]["test"]
    # the Caddyfile proxies to the upstream compose names, for the domain compose names
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert "reverse_proxy {$CADDY_UPSTREAM" in caddyfile and "{$VTP_DOMAIN" in caddyfile


def test_cluster_profile_runs_two_nodes_behind_the_proxy(
    raw: dict[str, Any], resolved: dict[str, Any]
) -> None:
    """Profile "cluster": a second node sharing PostgreSQL, Redis and S3 with the first,
    with its own media port, state and VTP_NODE_URL (its own door on the proxy), and a
    Caddy spreading VTP_DOMAIN over both nodes."""
    services = resolved["services"]
    a, b = services["vtp"]["environment"], services["vtp-b"]["environment"]
    assert raw["services"]["vtp-b"]["profiles"] == ["cluster"]
    assert raw["services"]["caddy-cluster"]["profiles"] == ["cluster"]
    for shared in ("DATABASE_URL", "REDIS_URL", "VTP_S3_ENDPOINT", "VTP_S3_ACCESS_KEY"):
        assert a[shared] == b[shared], shared
    assert b["VTP_CLUSTER"] == "true" and b["VTP_NODE_ID"] == "vtp-b"
    assert a["VTP_CLUSTER"] in ("true", "false")  # .env decides for the first node
    assert a["VTP_ICE_UDP_PORT"] != b["VTP_ICE_UDP_PORT"]
    port = b["VTP_ICE_UDP_PORT"]
    b_ports = [str(p) for p in raw["services"]["vtp-b"]["ports"]]
    for protocol in ("udp", "tcp"):
        assert any(p.endswith(f":{port}:{port}/{protocol}") for p in b_ports), b_ports
    assert "8080" not in " ".join(b_ports)  # reached through the proxy only
    volumes = [str(v) for v in raw["services"]["vtp-b"]["volumes"]]
    assert volumes == ["vtpstate-b:/var/lib/vtp", "turntls:/turn-tls:ro"]
    assert "vtpstate-b" in resolved["volumes"]
    # the proxy: VTP_DOMAIN over both nodes, and each node's door at the URL it announces
    caddy = services["caddy-cluster"]
    env = caddy["environment"]
    assert env["CADDY_UPSTREAMS"].split() == ["vtp:8080", "vtp-b:8080"]
    assert b["VTP_NODE_URL"] == f"https://{env['VTP_DOMAIN']}:{env['NODE_B_HTTPS_PORT']}"
    assert env["NODE_B_UPSTREAM"] == "vtp-b:8080" and env["NODE_A_UPSTREAM"] == "vtp:8080"
    caddy_ports = [str(p) for p in raw["services"]["caddy-cluster"]["ports"]]
    published = [str(p) for p in caddy["ports"]]
    assert len(caddy_ports) == 5, caddy_ports
    for node_port in (env["NODE_A_HTTPS_PORT"], env["NODE_B_HTTPS_PORT"]):
        assert any(str(node_port) in p for p in published), published
    assert caddy["networks"]["vtp"]["ipv4_address"] == b["VTP_TRUSTED_PROXIES"]
    for node in ("vtp", "vtp-b"):
        assert caddy["depends_on"][node]["condition"] == "service_healthy"
    mounts = [str(v) for v in raw["services"]["caddy-cluster"]["volumes"]]
    assert "./deploy/Caddyfile.cluster:/etc/caddy/Caddyfile:ro" in mounts
    caddyfile = (ROOT / "deploy" / "Caddyfile.cluster").read_text()
    for placeholder in ("{$CADDY_UPSTREAMS", "{$NODE_A_UPSTREAM", "{$NODE_B_UPSTREAM"):
        assert placeholder in caddyfile
    assert ":{$NODE_B_HTTPS_PORT" in caddyfile and "lb_policy" in caddyfile


def test_cluster_caddyfile_routes_each_door(tmp_path: Path) -> None:
    """Debian's caddy reads deploy/Caddyfile.cluster as compose fills it in: VTP_DOMAIN
    spread round-robin over both nodes (health-checked), 8443 to the first, 8444 to vtp-b."""
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("needs Debian's caddy")
    env = {**_compose_env(), "VTP_DOMAIN": "vtp.test", "CADDY_TLS": "tls internal"}
    adapted = subprocess.run(
        [caddy, "adapt", "--adapter", "caddyfile", "--config", "deploy/Caddyfile.cluster"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    config = json.loads(adapted.stdout.splitlines()[0])
    doors: dict[str, Any] = {}
    for server in config["apps"]["http"]["servers"].values():
        (route,) = server["routes"]
        assert route["match"] == [{"host": ["vtp.test"]}]
        (proxy,) = [h for r in route["handle"][0]["routes"] for h in r["handle"]]
        doors[server["listen"][0]] = proxy
    assert set(doors) == {":443", ":8443", ":8444"}
    assert [u["dial"] for u in doors[":443"]["upstreams"]] == ["vtp:8080", "vtp-b:8080"]
    assert doors[":443"]["load_balancing"]["selection_policy"]["policy"] == "round_robin"
    assert doors[":443"]["health_checks"]["active"]["uri"] == "/health"
    assert [u["dial"] for u in doors[":8443"]["upstreams"]] == ["vtp:8080"]
    assert [u["dial"] for u in doors[":8444"]["upstreams"]] == ["vtp-b:8080"]


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """target -> (source, read-only) of a resolved service's volumes."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found[volume["target"]] = (volume["source"], bool(volume.get("read_only")))
        else:
            source, target, *mode = volume.split(":")
            found[target] = (source, mode == ["ro"])
    return found


def test_turn_over_tls_serves_caddys_certificate(
    raw: dict[str, Any], resolved: dict[str, Any], project: Path
) -> None:
    """TURN over TLS out of the box with a proxy profile: turn-tls copies the certificate
    Caddy obtained for VTP_DOMAIN (caddydata, read-only) into the turntls volume, owned
    by coturn's unprivileged user; coturn (deploy/coturn.sh) mounts it and listens for TLS
    on the published TURN_TLS_PORT; VTP lists the turns: URL for that domain and port,
    gated on the same certificate file (VTP_TURN_TLS_CERT). tests/test_turn_tls.py runs
    both scripts for real."""
    services = resolved["services"]
    coturn, sync, caddy = services["coturn"], services["turn-tls"], services["caddy"]
    # the copier: root, in both proxy profiles, Caddy's data read-only, for Caddy's domain
    assert sorted(raw["services"]["turn-tls"]["profiles"]) == ["cluster", "proxy"]
    assert "profiles" not in raw["services"]["coturn"]  # coturn always runs
    sync_env = sync["environment"]
    assert sync["user"] == "0:0"
    assert sync["entrypoint"] == ["/bin/sh", "/deploy/turn-tls-sync.sh"]
    sync_mounts = _mounts(sync)
    assert sync_mounts["/deploy/turn-tls-sync.sh"] == (
        str(project / "deploy" / "turn-tls-sync.sh"),
        True,
    )
    assert sync_mounts[sync_env["CADDY_DATA"]] == ("caddydata", True)
    for proxy in ("caddy", "caddy-cluster"):
        assert _mounts(services[proxy])["/data"] == ("caddydata", False), proxy
        assert services[proxy]["environment"]["VTP_DOMAIN"] == sync_env["VTP_DOMAIN"]
    assert sync_mounts[sync_env["TURN_TLS_DIR"]] == ("turntls", False)
    assert int(sync_env["TURN_TLS_INTERVAL_S"]) > 0  # (0: once, for tests)
    # coturn: that user, the same volume read-only, TLS on the published port
    assert coturn["user"] == sync_env["TURN_TLS_OWNER"] == "65534:65534"
    assert coturn["entrypoint"] == ["/bin/sh", "/deploy/coturn.sh"]
    coturn_env = coturn["environment"]
    coturn_mounts = _mounts(coturn)
    assert coturn_mounts["/deploy/coturn.sh"] == (str(project / "deploy" / "coturn.sh"), True)
    assert coturn_mounts[coturn_env["TURN_TLS_DIR"]] == ("turntls", True)
    assert "--no-tls" not in coturn["command"]  # (deploy/coturn.sh adds it while no cert)
    assert not any(a.startswith(("--cert", "--pkey", "--tls-listening")) for a in coturn["command"])
    tls_port = int(coturn_env["TURN_TLS_PORT"])
    ports = [str(p) for p in coturn["ports"]]
    assert any(p.endswith(f":{tls_port}:{tls_port}/tcp") for p in ports), ports
    # VTP: the turns: URL for the domain and that port, gated on the file coturn serves
    domain = sync_env["VTP_DOMAIN"]
    assert caddy["environment"]["VTP_DOMAIN"] == domain
    for node in ("vtp", "vtp-b"):
        env = services[node]["environment"]
        urls = env["VTP_TURN_URLS"].split(",")
        assert urls[-1] == f"turns:{domain}:{tls_port}?transport=tcp", urls
        assert [u for u in urls if u.startswith("turns:")] == [urls[-1]]  # last: aioice
        cert = Path(env["VTP_TURN_TLS_CERT"])
        assert cert.name == "cert.pem"
        assert _mounts(services[node])[str(cert.parent)] == ("turntls", True), node
    assert "turntls" in resolved["volumes"]
    # the scripts read what compose gives them
    sync_script = (ROOT / "deploy" / "turn-tls-sync.sh").read_text()
    for name in ("VTP_DOMAIN", "CADDY_DATA", "TURN_TLS_DIR", "TURN_TLS_OWNER"):
        assert "${" + name in sync_script, name
    wrapper = (ROOT / "deploy" / "coturn.sh").read_text()
    for name in ("TURN_TLS_DIR", "TURN_TLS_PORT"):
        assert "${" + name in wrapper, name
    assert 'turnserver "$@"' in wrapper and "kill -USR2" in wrapper
