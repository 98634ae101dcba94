"""What each worker of `vtp serve --workers N` gets of its own (ports, id, ICE range)."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

from vtp.config import load_config
from vtp.workers import Supervisor, worker_env, workers_refusal


def test_each_worker_has_its_own_ports_and_id_and_shares_the_http_port() -> None:
    config = load_config(port=8080, ice_udp_port=40000, node_id="host7")
    envs = [worker_env(config, i, 3, {"KEEP": "1"}) for i in range(3)]
    assert [e["VTP_NODE_ID"] for e in envs] == ["host7-w0", "host7-w1", "host7-w2"]
    assert [e["VTP_NODE_PORT"] for e in envs] == ["8081", "8082", "8083"]
    assert [e["VTP_ICE_UDP_PORT"] for e in envs] == ["40000", "40001", "40002"]
    for env in envs:
        assert env["VTP_PORT"] == "8080" and env["VTP_REUSE_PORT"] == "true"
        assert env["VTP_WORKERS"] == "1" and env["VTP_CLUSTER"] == "true"
        assert env["KEEP"] == "1"
        # each worker's settings load as a valid configuration of one node
        cfg = load_config(
            **{k[4:].lower(): v for k, v in env.items() if k.startswith("VTP_")}  # type: ignore[arg-type]
        )
        assert cfg.workers == 1 and cfg.cluster and cfg.reuse_port


def test_the_ice_port_range_is_split_and_a_free_port_stays_free() -> None:
    config = load_config(port=9000, node_port=9100, ice_port_min=50000, ice_port_max=50099)
    envs = [worker_env(config, i, 4, {}) for i in range(4)]
    ranges = [(int(e["VTP_ICE_PORT_MIN"]), int(e["VTP_ICE_PORT_MAX"])) for e in envs]
    assert ranges == [(50000, 50024), (50025, 50049), (50050, 50074), (50075, 50099)]
    assert [e["VTP_NODE_PORT"] for e in envs] == ["9100", "9101", "9102", "9103"]
    assert "VTP_ICE_UDP_PORT" not in envs[0]
    free = worker_env(load_config(ice_udp_port=0), 1, 2, {"VTP_ICE_UDP_PORT": "0"})
    assert free["VTP_ICE_UDP_PORT"] == "0"  # each worker binds a free port of its own


def test_what_cannot_be_shared_is_refused() -> None:
    narrow = load_config(ice_port_min=50000, ice_port_max=50002)
    assert "fewer ports than workers" in (workers_refusal(narrow, 4) or "")
    assert workers_refusal(narrow, 3) is None
    high = load_config(port=65534)
    assert "65535" in (workers_refusal(high, 2) or "")


# A stand-in worker: notes its start, and on SIGTERM drains for a while, then exits 0.
_WORKER = """
import os, pathlib, signal, sys, time
note = pathlib.Path(sys.argv[1]) / str(os.getpid())
def drain(*_):
    note.write_text("draining")
    time.sleep(1.0)
    note.write_text("drained")
    sys.exit(0)
signal.signal(signal.SIGTERM, drain)
note.write_text("started")
while True:
    time.sleep(0.05)
"""


async def test_sigterm_drains_every_worker_and_restarts_none(tmp_path: Path) -> None:
    supervisor = Supervisor(
        load_config(port=8080), 2, command=[sys.executable, "-c", _WORKER, str(tmp_path)]
    )
    running = asyncio.create_task(supervisor.run())

    def notes() -> list[str]:
        return sorted(p.read_text() for p in tmp_path.iterdir())

    deadline = time.monotonic() + 30
    while notes() != ["started", "started"]:
        assert time.monotonic() < deadline, notes()
        await asyncio.sleep(0.05)
    supervisor._stop(signal.SIGTERM)  # (as the signal handler does)
    assert await asyncio.wait_for(running, 30) == 0
    # each worker finished its drain (none was killed) and none was started again
    assert notes() == ["drained", "drained"]
    assert all(proc.returncode == 0 for proc in supervisor.procs.values())
