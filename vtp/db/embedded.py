"""The embedded PostgreSQL used when no DATABASE_URL is configured (PyPI `pgserver`)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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
        import pgserver  # imported lazily: the real-server path never needs it

        return pgserver.get_server(self.pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.to_thread(server.cleanup)
