"""Files and folders VTP keeps on local disk are its own: folders 0700, files 0600.

The state directory holds the generated JWT secret, the embedded database, uploaded
submissions and recordings; nobody else on the machine needs to read any of it. Its 0700
also covers what libraries write inside it with their own modes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` and any missing parents as 0700 folders; an existing `path` is made
    0700 too (existing parents are left alone: they may be shared, like /tmp)."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # created meanwhile by another process
            folder.mkdir(mode=DIR_MODE)
    os.chmod(path, DIR_MODE)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write a new file (or replace an existing one's content) readable only by VTP."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def copy_private(source: Path, path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as out, source.open("rb") as src:
        shutil.copyfileobj(src, out, 1024 * 1024)
