"""Upload closed recordings from the spool, verify them, and only then delete them.

Per file: SHA-256 and size computed locally (kept in the manifest), multipart upload,
then the store's size and a streamed SHA-256 of what it holds must match. A verified
file is marked ``uploaded`` in the local manifest, so after a restart only the rest is
sent again. When every file and the manifest are in the store the row becomes
``available`` and the spool directory is removed.

Failures are retried with exponential backoff, forever: a recording is never dropped.
After ``recording_retry_attempts`` failed attempts the row shows ``failed`` with the
reason (store unreachable, bucket missing, disk full ...); a later success makes it
``available``. While uploads wait for their backoff timer the store is pinged every
``STORE_PROBE_S``: once it answers again after not answering (or after an upload
could not reach it), every waiting upload is retried at once instead of at its timer
(up to ``recording_retry_max_s`` later). A store that answers all along keeps the
backoff: the upload failed for another reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from vtp.config import Config
from vtp.db import recordings
from vtp.recorder.matroska import content_type
from vtp.recorder.session import MANIFEST, describe_error, read_manifest, write_json_atomically
from vtp.recorder.spool import Spool
from vtp.storage import MissingBucket, ObjectStore, StorageError, file_sha256

log = logging.getLogger(__name__)

STORE_PROBE_S = 1.0
STORE_PROBE_TIMEOUT_S = 3.0


def object_prefix(recording_id: uuid.UUID) -> str:
    return f"recordings/{recording_id}"


class VerifyError(StorageError):
    pass


@dataclass
class Pending:
    attempts: int = 0
    error: str | None = None
    retry_at: float | None = None
    unreachable: bool = False  # the last attempt could not reach the store


def unreachable(exc: BaseException) -> bool:
    """Did the store not answer at all (refused, timed out), as opposed to refusing?"""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):  # connection errors, timeouts
            return True
        seen = seen.__cause__
    return False


def main_file(files: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The file the row points at: the longest one with video, else the longest."""
    usable = [f for f in files if f.get("uploaded")]
    if not usable:
        return None

    def rank(f: dict[str, Any]) -> tuple[int, int]:
        return ("video" in (f.get("kinds") or []), int(f.get("duration_ms") or 0))

    return max(usable, key=rank)


class Uploader:
    def __init__(
        self, config: Config, spool: Spool, store: ObjectStore, pool: asyncpg.Pool
    ) -> None:
        self.config = config
        self.spool = spool
        self.store = store
        self.pool = pool
        self.pending: dict[uuid.UUID, Pending] = {}
        self._queue: asyncio.Queue[uuid.UUID] = asyncio.Queue()
        self._queued: set[uuid.UUID] = set()
        self._task: asyncio.Task[None] | None = None
        self._timers: dict[uuid.UUID, asyncio.TimerHandle] = {}
        self._notes: set[asyncio.Task[None]] = set()
        self._probe: asyncio.Task[None] | None = None
        # set while nothing is queued or uploading (failed uploads waiting for their
        # retry do not count): what a draining node waits for before it exits
        self._idle = asyncio.Event()
        self._idle.set()
        self.uploaded = 0
        # told (recording id, "available" | "failed", why it failed) when an upload ends
        self.on_outcome: Callable[[uuid.UUID, str, str | None], None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="vtp-recording-uploader")

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def submit(self, recording_id: uuid.UUID) -> None:
        self.pending.setdefault(recording_id, Pending())
        timer = self._timers.pop(recording_id, None)
        if timer is not None:
            timer.cancel()
        if recording_id not in self._queued:
            self._queued.add(recording_id)
            self._idle.clear()
            self._queue.put_nowait(recording_id)

    async def settled(self, timeout_s: float) -> bool:
        """Wait (``timeout_s`` at most) until every upload submitted has been tried;
        True when none is left (a failed one waits in the spool for its retry, or for the
        next start of a process on this spool)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        return not self.pending

    def retry_now(self) -> None:
        """Try every waiting upload at once (e.g. the store answers again)."""
        for recording_id in list(self._timers):
            self.submit(recording_id)

    def waiting(self) -> dict[uuid.UUID, Pending]:
        """Uploads that failed and wait for their retry (not those being retried)."""
        return {rid: state for rid, state in self.pending.items() if rid in self._timers}

    async def _probe_store(self) -> None:
        """While uploads wait, ask the store whether it answers; when it answers after
        not answering, retry them all now."""
        was_down = any(state.unreachable for state in self.waiting().values())
        while self._timers:
            await asyncio.sleep(STORE_PROBE_S)
            if not self._timers:
                break
            try:
                await asyncio.wait_for(self.store.ping(), STORE_PROBE_TIMEOUT_S)
            except asyncio.CancelledError:
                raise
            except Exception:
                was_down = True
                continue
            if was_down:
                log.info(
                    "object store answers again: retrying %d waiting upload(s) now",
                    len(self._timers),
                )
                self.retry_now()
                break

    @property
    def last_error(self) -> str | None:
        errors = [p.error for p in self.pending.values() if p.error]
        return errors[-1] if errors else None

    async def _run(self) -> None:
        while True:
            recording_id = await self._queue.get()
            self._queued.discard(recording_id)
            try:
                await self.upload(recording_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(recording_id, exc)
            else:
                self.pending.pop(recording_id, None)
            if self._queue.empty():
                self._idle.set()

    def _failed(self, recording_id: uuid.UUID, exc: BaseException) -> None:
        state = self.pending.setdefault(recording_id, Pending())
        state.attempts += 1
        if isinstance(exc, MissingBucket):
            reason = f"object store: {exc}"
        elif isinstance(exc, StorageError):
            reason = f"object store unreachable or refusing: {exc}"
        else:
            reason = describe_error(exc)
        state.error = reason
        state.unreachable = isinstance(exc, StorageError) and unreachable(exc)
        delay = min(
            self.config.recording_retry_max_s,
            self.config.recording_retry_first_s * (2 ** (state.attempts - 1)),
        )
        log.error(
            "recording %s: upload attempt %d failed: %s; retrying in %.0f s (the files stay in %s)",
            recording_id,
            state.attempts,
            reason,
            delay,
            self.spool.directory(recording_id),
        )
        failed = state.attempts >= self.config.recording_retry_attempts
        if state.attempts == self.config.recording_retry_attempts:
            self._outcome(recording_id, "failed", reason)
        note = asyncio.create_task(self._note(recording_id, reason, failed))
        self._notes.add(note)
        note.add_done_callback(self._notes.discard)
        loop = asyncio.get_running_loop()
        state.retry_at = loop.time() + delay
        self._timers[recording_id] = loop.call_later(delay, self._retry, recording_id)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._probe_store(), name="vtp-recording-probe")

    def _outcome(self, recording_id: uuid.UUID, outcome: str, error: str | None) -> None:
        if self.on_outcome is not None:
            try:
                self.on_outcome(recording_id, outcome, error)
            except Exception:
                log.exception("recording outcome listener failed")

    def _retry(self, recording_id: uuid.UUID) -> None:
        self._timers.pop(recording_id, None)
        self.submit(recording_id)

    async def _note(self, recording_id: uuid.UUID, reason: str, failed: bool) -> None:
        try:
            await recordings.note_error(self.pool, recording_id, reason, failed=failed)
        except Exception:
            log.exception("recording %s: cannot record its upload error", recording_id)

    # --- one recording ----------------------------------------------------------------

    async def upload(self, recording_id: uuid.UUID) -> None:
        directory = self.spool.directory(recording_id)
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            log.warning("recording %s: nothing in the spool to upload", recording_id)
            return
        manifest = await asyncio.to_thread(read_manifest, directory)
        if manifest.get("state") != "closed":
            return  # still recording
        prefix = object_prefix(recording_id)
        files = [f for f in manifest.get("files", []) if (directory / f["name"]).is_file()]
        for entry in files:
            if entry.get("uploaded"):
                continue
            path = directory / entry["name"]
            if not entry.get("sha256") or entry.get("size") is None:
                entry["size"] = (await asyncio.to_thread(path.stat)).st_size
                entry["sha256"] = await asyncio.to_thread(file_sha256, path)
            key = f"{prefix}/{entry['name']}"
            await self._put_verified(
                key, path, entry["size"], entry["sha256"], content_type(path.name)
            )
            entry["uploaded"] = True
            entry["key"] = key
            await asyncio.to_thread(write_json_atomically, manifest_path, manifest)
        manifest["files"] = [f for f in manifest.get("files", []) if f.get("uploaded")]
        main = main_file(manifest["files"])
        manifest["main"] = main["name"] if main else None
        await asyncio.to_thread(write_json_atomically, manifest_path, manifest)
        if main is None:
            await recordings.mark_failed(
                self.pool, recording_id, "nothing was published while recording"
            )
            self._outcome(recording_id, "failed", "nothing was published while recording")
            log.warning("recording %s: no media was recorded", recording_id)
            await asyncio.to_thread(self.spool.remove, recording_id)
            return
        size = (await asyncio.to_thread(manifest_path.stat)).st_size
        digest = await asyncio.to_thread(file_sha256, manifest_path)
        await self._put_verified(
            f"{prefix}/{MANIFEST}", manifest_path, size, digest, "application/json"
        )
        found = await recordings.mark_available(
            self.pool,
            recording_id,
            object_key=main["key"],
            size_bytes=int(main["size"]),
            sha256=str(main["sha256"]),
            duration_ms=manifest.get("duration_ms"),
        )
        if not found:
            log.warning("recording %s: uploaded, but it has no row in this database", recording_id)
        else:
            self._outcome(recording_id, "available", None)
        await asyncio.to_thread(self.spool.remove, recording_id)
        self.uploaded += 1
        log.info(
            "recording %s: uploaded and verified (%d file(s)); spool copy removed",
            recording_id,
            len(manifest["files"]),
        )

    async def _put_verified(
        self, key: str, path: Path, size: int, sha256: str, content_type: str
    ) -> None:
        await self.store.put_file(
            key, path, content_type, part_size=self.config.recording_part_size_mb * 1024 * 1024
        )
        stored_size = (await self.store.stat(key)).size
        if stored_size != size:
            raise VerifyError(f"{key}: the store holds {stored_size} bytes, expected {size}")
        stored_sha = await self.store.sha256(key)
        if stored_sha != sha256:
            raise VerifyError(f"{key}: SHA-256 of the stored object does not match")
