"""The `vtp` command end to end: embedded defaults, migrate, user create, check."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from helpers import JWT_TEST_SECRET

from vtp import cli
from vtp.config import load_config
from vtp.db.migrate import discover

VTP = [sys.executable, "-m", "vtp"]
_SERVICE_VARS = ("DATABASE_URL", "REDIS_URL", "VTP_S3_ENDPOINT", "VTP_JWT_SECRET")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SERVICE_VARS}
    env.update({"VTP_BCRYPT_COST": "4", "VTP_LOG_FORMAT": "json"}, **extra)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, state_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = state_dir.parent / f"serve-{self.port}.log"
        self.proc = subprocess.Popen(
            [*VTP, "serve", "--port", str(self.port)],
            env=_env(VTP_STATE_DIR=str(state_dir)),
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout: float = 90) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"vtp serve exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"vtp serve never became healthy: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Stop as an operator would (Ctrl-C) and require a clean exit."""
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        assert code == 0, f"vtp serve exited with {code}: {self.log.read_text()[-3000:]}"


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "state"
    yield path
    # The embedded PostgreSQL stops with the last handle; make sure nothing is left.
    pidfile = path / "pgdata" / "postmaster.pid"
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)


@pytest.mark.slow
async def test_serve_with_nothing_configured(state_dir: Path) -> None:
    server = Server(state_dir)
    try:
        server.wait_healthy()
        async with aiohttp.ClientSession(server.url) as http:
            async with http.get("/ready") as resp:
                ready = await resp.json()
                assert resp.status == 200, ready
                assert ready["components"]["postgres"]["backend"] == "embedded"
                assert ready["components"]["redis"]["backend"] == "in-process"
                assert ready["components"]["object_store"]["backend"] == "local-disk"
            creds = {"email": "emb@example.org", "password": "a good long password"}
            async with http.post(
                "/api/v1/auth/register", json={**creds, "display_name": "Emb"}
            ) as resp:
                assert resp.status == 201
            async with http.post("/api/v1/auth/login", json=creds) as resp:
                assert resp.status == 200
                tokens = await resp.json()
            auth = {"Authorization": f"Bearer {tokens['access_token']}"}
            async with http.get("/api/v1/users/me", headers=auth) as resp:
                assert (await resp.json())["email"] == "emb@example.org"
            async with http.post(
                "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
            ) as resp:
                assert resp.status == 200
                tokens = await resp.json()
            auth = {"Authorization": f"Bearer {tokens['access_token']}"}
            async with http.post("/api/v1/auth/logout", headers=auth) as resp:
                assert resp.status == 204
            async with http.get("/api/v1/users/me", headers=auth) as resp:
                assert resp.status == 401
    finally:
        server.stop()
    log_lines = [
        json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")
    ]
    assert any(e.get("request_id") for e in log_lines), "JSON logs carry request ids"
    # The first screen: where VTP listens and how to get in, without the libraries'
    # chatter (pgserver's INFO lines carry initdb's banner; platformdirs warns).
    first_screen = server.log.read_text()
    assert f"is listening on {server.url}" in first_screen, first_screen
    assert any(e["msg"].startswith("no account yet") for e in log_lines), first_screen
    assert all(e["logger"].startswith("vtp.") for e in log_lines if e["level"] == "info")
    assert "start the database server" not in first_screen
    assert "XDG_RUNTIME_DIR" not in first_screen

    # Restarted, it reuses the same embedded database (and JWT secret).
    server = Server(state_dir)
    try:
        server.wait_healthy()
        async with (
            aiohttp.ClientSession(server.url) as http,
            http.post("/api/v1/auth/login", json=creds) as resp,
        ):
            assert resp.status == 200
    finally:
        server.stop()
    assert "no account yet" not in server.log.read_text()


async def test_user_create_asks_for_the_password_twice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    typed = iter(["a good long password", "a good long passwrod"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(typed))
    args = cli.build_parser().parse_args(["user", "create", "--email", "t@example.org"])
    # refused before any database is reached (none is configured here)
    assert await cli._user_create(load_config(), args) == 2
    assert "the passwords differ" in capsys.readouterr().err
    assert next(typed, None) is None  # both prompts were shown


def test_migrate_user_create_and_check(
    empty_database_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = _env(
        DATABASE_URL=empty_database_url,
        REDIS_URL=redis_url,
        VTP_STATE_DIR=str(tmp_path),
        VTP_JWT_SECRET=JWT_TEST_SECRET,
    )
    out = subprocess.run([*VTP, "migrate"], env=env, capture_output=True, text=True, check=True)
    every = [f"{m.version:03d}_{m.name}" for m in discover()]
    assert json.loads(out.stdout) == {"applied": every}
    out = subprocess.run([*VTP, "migrate"], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"applied": []}

    create = [
        *VTP,
        "user",
        "create",
        "--email",
        "root@example.org",
        "--role",
        "admin",
        "--password-stdin",
    ]
    out = subprocess.run(
        create, env=env, input="an admin password\n", capture_output=True, text=True, check=True
    )
    user = json.loads(out.stdout)
    assert user["role"] == "admin" and "password_hash" not in user
    again = subprocess.run(
        create, env=env, input="an admin password\n", capture_output=True, text=True
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    weak = subprocess.run(
        [*create[:6], "other@example.org", "--password", "short"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert weak.returncode == 2 and "at least" in weak.stderr
    # A one-time reset link, e.g. for a forgotten admin password on a server without e-mail.
    link_cmd = [*VTP, "user", "reset-link", "--email", "ROOT@example.org"]
    out = subprocess.run(link_cmd, env=env, capture_output=True, text=True, check=True)
    link = json.loads(out.stdout)
    assert link["reset_url"].startswith("http://127.0.0.1:8080/reset-password#token=")
    nobody = subprocess.run(
        [*link_cmd[:-1], "nobody@example.org"], env=env, capture_output=True, text=True
    )
    assert nobody.returncode == 1 and "no active user" in nobody.stderr

    out = subprocess.run([*VTP, "check"], env=env, capture_output=True, text=True)
    report = json.loads(out.stdout)
    assert out.returncode == 0, out.stderr
    assert report["ok"] is True
    assert set(report["components"]) == {"postgres", "redis", "object_store"}

    down = {**env, "REDIS_URL": f"redis://127.0.0.1:{_free_port()}/0"}
    out = subprocess.run([*VTP, "check"], env=down, capture_output=True, text=True)
    assert out.returncode == 1
    assert json.loads(out.stdout)["components"]["redis"]["status"] == "down"


def test_invalid_configuration_is_reported(tmp_path: Path) -> None:
    out = subprocess.run(
        [*VTP, "migrate"], env=_env(VTP_PORT="not-a-port"), capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "invalid configuration" in out.stderr and "port" in out.stderr
