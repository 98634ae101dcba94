"""The JWT signing secret: configured, or generated once and kept in the state directory."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from vtp.private_files import FILE_MODE, private_dir

log = logging.getLogger(__name__)


def load_or_create_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    private_dir(path.parent)
    value = secrets.token_urlsafe(48)
    # O_EXCL: if two processes race, one wins and the other reads the winner's secret.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    log.warning("VTP_JWT_SECRET is not set: generated one in %s", path)
    return value
