"""Real `vtp serve` processes sharing PostgreSQL and Redis: `--workers 2` answers on one
port with two registered nodes and restarts a killed worker; a node killed with SIGKILL
leaves the registry within 10 s; a cluster refuses the embedded Redis."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from helpers import JWT_TEST_SECRET
from redis import Redis

VTP = [sys.executable, "-m", "vtp"]
_SERVICE_VARS = ("DATABASE_URL", "REDIS_URL", "VTP_S3_ENDPOINT", "VTP_JWT_SECRET")
T = TypeVar("T")

pytestmark = pytest.mark.slow


def _free_port(kind: int = socket.SOCK_STREAM, count: int = 1) -> int:
    """A port p with p..p+count-1 free (of this kind) right now. A UDP media port must be
    free for TCP too: the node serves ICE over TCP on the same number."""
    kinds = (kind, socket.SOCK_STREAM) if kind == socket.SOCK_DGRAM else (kind,)
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + count > 65535:
            continue
        try:
            for number in range(port, port + count):
                for probe_kind in kinds:
                    with socket.socket(socket.AF_INET, probe_kind) as probe:
                        probe.bind(("127.0.0.1", number))
        except OSError:
            continue
        return port
    raise AssertionError("no free ports")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SERVICE_VARS}
    env.update(
        VTP_BCRYPT_COST="4",
        VTP_LOG_FORMAT="json",
        VTP_STATE_DIR=str(tmp_path / "state"),
        VTP_ICE_ADDRESSES="127.0.0.1",
        VTP_JWT_SECRET=JWT_TEST_SECRET,
    )
    env.update(extra)
    return env


def _poll(check: Callable[[], T | None], within: float, what: str) -> T:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {within} s")


def _health(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as resp:
            body: dict[str, Any] = json.loads(resp.read())
            return body
    except OSError:
        return None


def _nodes(redis: Redis) -> dict[str, dict[str, Any]]:
    found = {}
    for raw_id in redis.zrange("vtp:cluster:nodes", 0, -1):
        raw = redis.get(f"vtp:cluster:node:{raw_id.decode()}")
        if raw is not None:
            info = json.loads(raw)
            found[info["id"]] = info
    return found


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [*VTP, *args], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
        )

    def tail(self) -> str:
        return self.log.read_text()[-3000:]

    def stop(self, sig: int = signal.SIGTERM, within: float = 40) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"did not stop: {self.tail()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def test_two_workers_share_one_port_register_and_restart(
    tmp_path: Path, database_url: str, redis_url: str, redis: Redis
) -> None:
    port = _free_port(count=3)  # the shared port and each worker's own
    media = _free_port(socket.SOCK_DGRAM, count=2)
    env = _env(
        tmp_path,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        VTP_NODE_ID="cl",
        VTP_ICE_UDP_PORT=str(media),
    )
    server = Process(["serve", "--port", str(port), "--workers", "2"], env, tmp_path / "w.log")
    try:

        def both() -> dict[str, dict[str, Any]] | None:
            found = _nodes(redis)
            return found if len(found) == 2 else None

        nodes = _poll(both, 90, "two nodes")
        assert set(nodes) == {"cl-w0", "cl-w1"}, server.tail()
        for index in range(2):
            node = nodes[f"cl-w{index}"]
            assert node["url"] == f"http://127.0.0.1:{port + 1 + index}"
            assert node["media_address"] == "127.0.0.1"
            assert node["media_port"] == media + index
            # each worker answers at its own URL (what a redirect names)...
            assert (_health(node["url"]) or {}).get("node") == node["id"]
        # ...and both answer on the shared port (SO_REUSEPORT spreads new connections)
        seen = set()
        for _ in range(200):
            body = _health(f"http://127.0.0.1:{port}")
            if body is not None:
                seen.add(body["node"])
            if len(seen) == 2:
                break
        assert seen == {"cl-w0", "cl-w1"}

        # a worker killed outright is started again, under the same node id
        killed = nodes["cl-w0"]
        os.kill(killed["pid"], signal.SIGKILL)

        def restarted() -> dict[str, Any] | None:
            node = _nodes(redis).get("cl-w0")
            if node is None or node["pid"] == killed["pid"]:
                return None
            return node if (_health(node["url"]) or {}).get("node") == "cl-w0" else None

        again = _poll(restarted, 90, "the killed worker back")
        assert again["started_at"] > killed["started_at"]
        assert _nodes(redis)["cl-w1"]["pid"] == nodes["cl-w1"]["pid"]  # the other one ran on

        # SIGTERM stops both, and each leaves the registry as it stops (not by expiry)
        assert server.stop(signal.SIGTERM) == 0, server.tail()
        assert _nodes(redis) == {}
        assert redis.zcard("vtp:cluster:nodes") == 0
        assert _health(f"http://127.0.0.1:{port}") is None
    finally:
        server.kill()


def test_a_killed_node_leaves_the_registry_within_ten_seconds(
    tmp_path: Path, database_url: str, redis_url: str, redis: Redis
) -> None:
    port = _free_port()
    env = _env(
        tmp_path,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        VTP_CLUSTER="true",
        VTP_NODE_ID="solo",
    )
    server = Process(["serve", "--port", str(port)], env, tmp_path / "solo.log")
    try:
        _poll(lambda: _health(f"http://127.0.0.1:{port}"), 90, "healthy")
        assert "solo" in _nodes(redis)
        server.proc.kill()  # SIGKILL: no goodbye
        killed = time.monotonic()
        server.proc.wait(10)
        _poll(lambda: "solo" not in _nodes(redis), 12, "the dead node gone")
        assert time.monotonic() - killed < 10
    finally:
        server.kill()


@pytest.mark.parametrize(
    ("args", "extra", "why"),
    [
        (["--workers", "2"], {"DATABASE_URL": "postgresql://x@127.0.0.1:1/x"}, "--workers 2"),
        ([], {"VTP_CLUSTER": "true"}, "VTP_CLUSTER=true"),
    ],
)
def test_a_cluster_refuses_the_embedded_redis(
    tmp_path: Path, args: list[str], extra: dict[str, str], why: str
) -> None:
    out = subprocess.run(
        [*VTP, "serve", "--port", str(_free_port()), *args],
        env=_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert why in out.stderr and "REDIS_URL" in out.stderr, out.stderr
    assert "in-process Redis cannot be shared" in out.stderr
