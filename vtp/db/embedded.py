"""The embedded PostgreSQL used when no DATABASE_URL is configured (PyPI `pgserver`)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_START_ATTEMPTS = 3


class EmbeddedPostgres:
    """A PostgreSQL server living in `<state_dir>/pgdata`, reused across restarts."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None

    async def start(self) -> str:
        """Start (or attach to) the server and return its connection URI."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        # initdb and pg_ctl block for seconds: keep them off the event loop.
        self._server = await asyncio.to_thread(self._start_blocking)
        uri: str = self._server.get_uri()
        log.info("embedded PostgreSQL ready", extra={"pgdata": str(self.pgdata)})
        return uri

    def _start_blocking(self) -> Any:
        # Imported lazily: the real-server path never needs pgserver. Its import asks
        # platformdirs for a runtime folder, which warns when XDG_RUNTIME_DIR is unset (any
        # service or container): a fallback in /tmp is right for its lock file, so the
        # warning only clutters the first screen.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            from pgserver.postgres_server import PostgresServer

        # pgserver gives pg_ctl a fixed 10 s to start the server; on a loaded machine that
        # is sometimes not enough, and the next attempt finds the server up or starts it.
        last_error: Exception | None = None
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self.pgdata.mkdir(exist_ok=True)
                return PostgresServer(self.pgdata.resolve(), cleanup_mode="stop")
            except (subprocess.SubprocessError, OSError) as exc:
                last_error = exc
                log.warning(
                    "embedded PostgreSQL did not start (attempt %d of %d): %s",
                    attempt,
                    _START_ATTEMPTS,
                    exc,
                )
                time.sleep(attempt)
        raise RuntimeError(
            f"embedded PostgreSQL in {self.pgdata} failed to start; see {self.pgdata / 'log'}"
        ) from last_error

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.to_thread(server.cleanup)
