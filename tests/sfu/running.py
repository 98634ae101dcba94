"""A started SFU for a fixture (closed when it ends), whatever its configuration."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from vtp.config import Config
from vtp.sfu import Sfu


@contextlib.asynccontextmanager
async def running_sfu(config: Config) -> AsyncIterator[Sfu]:
    sfu = Sfu(config)
    await sfu.start()
    try:
        yield sfu
    finally:
        await sfu.close()
