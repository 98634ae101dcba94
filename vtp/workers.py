"""`vtp serve --workers N`: N node processes on one host (one per core) behind one HTTP port.

Each worker is a plain `vtp serve` with an environment of its own: the shared VTP_PORT
bound with SO_REUSEPORT (the kernel spreads connections over the workers), a port of its
own (VTP_NODE_PORT: base + index) that its node URL names, so that a redirect to that
node reaches it, its own media UDP port (VTP_ICE_UDP_PORT + index) or slice of the ICE
port range, and its own node id (<VTP_NODE_ID or hostname>-w<index>). The supervisor
restarts a worker that dies (waiting longer after each quick failure) and, on SIGTERM or
SIGINT, passes the signal on (SIGTERM drains every worker: vtp.drain) and waits for every
worker to stop, restarting none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence

from vtp.config import Config
from vtp.drain import FINISH_UPLOADS_S

log = logging.getLogger(__name__)

# a worker drains on SIGTERM (vtp.drain: VTP_DRAIN_TIMEOUT_S for its rooms, then the
# uploads of its recordings); one that has not stopped this long after is killed
STOP_MARGIN_S = 30.0
RESTART_FIRST_S = 0.5
RESTART_MAX_S = 30.0
STABLE_S = 30.0  # a worker that ran this long restarts without waiting longer


def worker_env(config: Config, index: int, workers: int, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of worker ``index`` (its settings override the inherited ones)."""
    env = dict(base)
    env.update(
        VTP_WORKERS="1",
        VTP_CLUSTER="true",
        VTP_REUSE_PORT="true",
        VTP_HOST=config.host,
        VTP_PORT=str(config.port),
        VTP_NODE_ID=f"{config.node_id or socket.gethostname()}-w{index}",
        VTP_NODE_PORT=str((config.node_port or config.port + 1) + index),
    )
    if config.ice_udp_port:  # 0 (a free port) stays 0: each worker gets one of its own
        env["VTP_ICE_UDP_PORT"] = str(config.ice_udp_port + index)
    if config.ice_port_min is not None and config.ice_port_max is not None:
        size = (config.ice_port_max - config.ice_port_min + 1) // workers
        low = config.ice_port_min + index * size
        env["VTP_ICE_PORT_MIN"] = str(low)
        env["VTP_ICE_PORT_MAX"] = str(low + size - 1)
    return env


def workers_refusal(config: Config, workers: int) -> str | None:
    """What --workers cannot share on this configuration, or None."""
    low, high = config.ice_port_min, config.ice_port_max
    if low is not None and high is not None and (high - low + 1) // workers < 1:
        return f"--workers {workers}: VTP_ICE_PORT_MIN..MAX has fewer ports than workers"
    last_node_port = (config.node_port or config.port + 1) + workers - 1
    if last_node_port > 65535:
        return f"--workers {workers}: the workers' own ports would pass 65535"
    return None


class Supervisor:
    def __init__(self, config: Config, workers: int, command: Sequence[str] | None = None):
        self.config = config
        self.workers = workers
        self.command = list(command or [sys.executable, "-m", "vtp", "serve"])
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.stopping = asyncio.Event()
        self.signal = signal.SIGTERM  # the one that stopped the supervisor

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop, sig)
        try:
            return await self._run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _run(self) -> int:
        log.info("starting %d workers on port %d", self.workers, self.config.port)
        keepers = [asyncio.create_task(self._keep(i)) for i in range(self.workers)]
        await self.stopping.wait()
        log.info("stopping %d workers", self.workers)
        timeout = STOP_MARGIN_S
        if self.signal == signal.SIGTERM:
            timeout += self.config.drain_timeout_s + FINISH_UPLOADS_S
        _, pending = await asyncio.wait(keepers, timeout=timeout)
        for proc in list(self.procs.values()):
            if proc.returncode is None:
                log.warning("worker pid %d did not stop in time: killing it", proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        if pending:
            await asyncio.wait(pending, timeout=5)
        return 0

    def _stop(self, sig: signal.Signals) -> None:
        """Pass the signal on to every worker (each time: a second SIGTERM hurries their
        drain), and restart none from now on."""
        if not self.stopping.is_set():
            self.signal = sig
        self.stopping.set()
        for proc in list(self.procs.values()):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)

    async def _keep(self, index: int) -> None:
        """Run worker ``index`` until the supervisor stops, restarting it when it dies."""
        delay = RESTART_FIRST_S
        env = worker_env(self.config, index, self.workers, os.environ)
        while not self.stopping.is_set():
            proc = await asyncio.create_subprocess_exec(*self.command, env=env)
            self.procs[index] = proc
            if self.stopping.is_set():  # the stop came while it was starting
                proc.send_signal(self.signal)
            started = time.monotonic()
            code = await proc.wait()
            if self.stopping.is_set():
                return
            delay = RESTART_FIRST_S if time.monotonic() - started > STABLE_S else delay
            log.warning(
                "worker %d (pid %d) exited with %s: restarting in %.1f s",
                index,
                proc.pid,
                code,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            delay = min(delay * 2, RESTART_MAX_S)


def supervise(config: Config, workers: int) -> int:
    return asyncio.run(Supervisor(config, workers).run())
