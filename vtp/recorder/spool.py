"""The spool: recordings on local disk until their upload is verified.

``<spool>/<recording id>/`` holds the WebM files and ``manifest.json``. A directory
whose manifest still says ``recording`` when the process starts was cut by a crash:
:func:`seal_cut_recording` seals its files (a remux that adds the Cues and duration
the crash kept from being written), notes where the recording was cut and marks it
``closed`` so it is uploaded like any other.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtp.recorder.matroska import CONTAINERS, seal
from vtp.recorder.session import MANIFEST, iso, read_manifest, write_json_atomically

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    recording_id: uuid.UUID
    directory: Path
    state: str  # "recording" (live or cut by a crash) or "closed"


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def directory(self, recording_id: uuid.UUID) -> Path:
        return self.root / str(recording_id)

    def scan(self) -> list[SpoolEntry]:
        """Every recording directory with a readable manifest, oldest first."""
        entries: list[tuple[float, SpoolEntry]] = []
        if not self.root.is_dir():
            return []
        for child in self.root.iterdir():
            if not child.is_dir():
                continue
            try:
                recording_id = uuid.UUID(child.name)
            except ValueError:
                continue
            try:
                manifest = read_manifest(child)
            except (OSError, ValueError) as exc:
                log.error("spool: %s has no readable manifest (%s); left in place", child, exc)
                continue
            state = str(manifest.get("state", "recording"))
            entries.append((child.stat().st_mtime, SpoolEntry(recording_id, child, state)))
        return [entry for _, entry in sorted(entries, key=lambda item: item[0])]

    def remove(self, recording_id: uuid.UUID) -> None:
        shutil.rmtree(self.directory(recording_id), ignore_errors=True)

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free


def seal_cut_recording(directory: Path) -> dict[str, Any]:
    """A recording a crash interrupted: seal each file (it plays up to the cut, now
    with its duration and Cues), note where the recording was cut (``cut_at_unix``:
    the end of the last media that reached the disk) and mark the manifest closed."""
    manifest = read_manifest(directory)
    for leftover in directory.glob(".*.sealing"):  # a seal cut by another crash
        leftover.unlink()
    ended = 0.0
    started = float(manifest.get("started_unix") or time.time())
    for entry in manifest.get("files", []):
        path = directory / entry["name"]
        if not path.is_file():
            entry["error"] = entry.get("error") or "file missing after a crash"
            continue
        try:
            seconds = seal(path)
        except Exception as exc:  # unreadable: keep it as it is, say so
            entry["error"] = entry.get("error") or f"unreadable after a crash: {exc}"
            continue
        entry["duration_ms"] = round(seconds * 1000)
        entry["ended"] = entry.get("ended") or "process stopped"
        offset = (entry.get("offset_ms") or 0) / 1000
        ended = max(ended, offset + seconds)
    # files that were not listed yet (cut before their first manifest write) are lost to
    # the manifest but not deleted: they stay in the directory and are uploaded too
    listed = {entry["name"] for entry in manifest.get("files", [])}
    extensions = {extension for _, extension, _ in CONTAINERS.values()}
    for path in sorted(directory.iterdir()):
        if path.suffix in extensions and path.name not in listed:
            log.warning("spool: %s is not in its manifest; uploading it too", path)
            try:
                seal(path)
            except Exception as exc:
                log.warning("spool: %s cannot be sealed (%s); uploading it as is", path, exc)
            manifest.setdefault("files", []).append(
                {
                    "name": path.name,
                    "stream_id": None,
                    "peer_id": None,
                    "label": "",
                    "kinds": [],
                    "offset_ms": None,
                    "duration_ms": None,
                    "ended": "unknown",
                    "error": "not in the manifest",
                }
            )
    manifest["state"] = "closed"
    manifest["ended_unix"] = started + ended
    manifest["ended_at"] = iso(started + ended)
    manifest["duration_ms"] = round(ended * 1000)
    manifest["ended_reason"] = "cut"
    manifest["cut_at_unix"] = started + ended
    manifest.setdefault("errors", []).append("recording cut short: the process stopped")
    write_json_atomically(directory / MANIFEST, manifest)
    return manifest
