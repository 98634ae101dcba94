"""The Recorder service: starts and stops recordings of live sessions, owns the spool
and the uploader, and reports its health.

The application builds it in a cleanup context (:mod:`vtp.app`: after the database,
object store and SFU, which it needs) and keeps it under ``app[vtp.appkeys.RECORDER]``;
its HTTP routes are the edge's (:mod:`vtp.api.recordings_control`).

Automatic start: the first stream published in a room whose live session has
``auto_record`` (and no recording yet) starts one; so does the first stream published in
a room whose last recording ended because its node stopped (``server_stopping``: drained
or restarted), on whichever node holds the room now - the recording goes on, as a new
part. A recording stops when asked, when
the room closes (the session ended), or at ``recording_max_length_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from vtp.config import Config
from vtp.db import recordings
from vtp.db.models import EndedReason
from vtp.health import ComponentHealth
from vtp.recorder.session import RecordingSession, describe_error, read_manifest
from vtp.recorder.spool import Spool, seal_cut_recording
from vtp.recorder.uploader import Uploader
from vtp.storage import ObjectStore

if TYPE_CHECKING:
    from vtp.sfu.events import Event
    from vtp.sfu.taps import MediaSource

log = logging.getLogger(__name__)

TICK_S = 0.5
LOW_DISK_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RecordingChanged:
    """Told to :meth:`Recorder.add_listener` callbacks (e.g. signalling, to tell the
    room): ``state`` is "started" or "stopped"."""

    room: str
    session_id: uuid.UUID
    recording_id: uuid.UUID
    state: str
    reason: str = ""


# (event type, course id, session id, data)
EmitEvent = Callable[[str, uuid.UUID, uuid.UUID, dict[str, Any]], None]


@dataclass
class Active:
    recording_id: uuid.UUID
    session_id: uuid.UUID
    course_id: uuid.UUID
    room_name: str
    session: RecordingSession
    deadline: float


class Recorder:
    def __init__(
        self,
        config: Config,
        pool: asyncpg.Pool,
        store: ObjectStore,
        sfu: MediaSource | None,
    ) -> None:
        self.config = config
        self.pool = pool
        self.store = store
        self.sfu = sfu
        self.spool = Spool(config.recording_spool)
        self.uploader = Uploader(config, self.spool, store, pool)
        self.uploader.on_outcome = self._upload_outcome
        # The event stream's emit (vtp.events), wired by the app; None: no events.
        self.events: EmitEvent | None = None
        self.active: dict[uuid.UUID, Active] = {}  # by session id
        self._by_room: dict[str, Active] = {}
        self._listeners: list[Callable[[RecordingChanged], None]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._tick: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._auto_checked: set[uuid.UUID] = set()
        self._lock = asyncio.Lock()
        self.spool_error: str | None = None

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self.spool.prepare)
        except OSError as exc:
            self.spool_error = f"spool {self.spool.root}: {describe_error(exc)}"
            log.error("recorder: %s", self.spool_error)
        self.uploader.start()
        await self.resume_spool()
        if self.sfu is not None:
            self._unsubscribe = self.sfu.add_listener(self._on_sfu_event)
        self._tick = asyncio.create_task(self._run(), name="vtp-recorder-tick")

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._tick is not None:
            self._tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick
            self._tick = None
        for session_id in list(self.active):
            try:
                await self.stop_recording(session_id, "server stopping", "server_stopping")
            except Exception:
                log.exception("recorder: stopping the recording of %s failed", session_id)
        for task in list(self._tasks):
            task.cancel()
        await self.uploader.close()

    async def stop_all(self) -> None:
        """The node is draining: stop every recording here (ended ``server_stopping``),
        handing its files to the uploader."""
        for session_id in list(self.active):
            await self._stop_quietly(session_id, "server stopping", "server_stopping")

    async def finish(self, timeout_s: float) -> bool:
        """The node is draining: stop every recording here and wait (``timeout_s`` at
        most) for the uploads to end. True when nothing is left to upload; otherwise what
        is left stays in the spool and is uploaded at the next start."""
        await self.stop_all()
        if self._tasks:  # (recordings stopping because their room closed)
            await asyncio.wait(list(self._tasks), timeout=timeout_s)
        return await self.uploader.settled(timeout_s)

    async def resume_spool(self) -> None:
        """Upload what a previous run left in the spool (sealing recordings it cut)."""
        entries = await asyncio.to_thread(self.spool.scan)
        in_spool = {entry.recording_id for entry in entries}
        # rows a previous run left "recording" with nothing in the spool cannot be saved
        for recording_id in await recordings.still_recording(self.pool):
            if recording_id not in in_spool and not any(
                a.recording_id == recording_id for a in self.active.values()
            ):
                log.error(
                    "recorder: recording %s has no files in %s; marking it failed",
                    recording_id,
                    self.spool.root,
                )
                await recordings.mark_failed(
                    self.pool, recording_id, f"lost: no files in the spool {self.spool.root}", "cut"
                )
        for entry in entries:
            if any(a.recording_id == entry.recording_id for a in self.active.values()):
                continue
            if entry.state != "closed":
                try:
                    manifest = await asyncio.to_thread(seal_cut_recording, entry.directory)
                except Exception as exc:
                    log.error("recorder: cannot seal %s: %s", entry.directory, exc)
                    continue
                log.warning(
                    "recorder: recording %s was cut by a stop; uploading %d file(s)",
                    entry.recording_id,
                    len(manifest.get("files", [])),
                )
                cut_at = manifest.get("cut_at_unix")
                await recordings.mark_uploading(
                    self.pool,
                    entry.recording_id,
                    manifest.get("duration_ms"),
                    "recording cut short: the process stopped",
                    "cut",
                    datetime.fromtimestamp(cut_at, UTC) if cut_at is not None else None,
                )
            elif await recordings.recording_status(self.pool, entry.recording_id) == "recording":
                # stopped, but the process ended before the row said so
                manifest = await asyncio.to_thread(read_manifest, entry.directory)
                await recordings.mark_uploading(
                    self.pool,
                    entry.recording_id,
                    manifest.get("duration_ms"),
                    None,
                    manifest.get("ended_reason") or "stopped",
                )
            self.uploader.submit(entry.recording_id)

    # --- control ----------------------------------------------------------------------

    def add_listener(self, callback: Callable[[RecordingChanged], None]) -> Callable[[], None]:
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    def _emit(self, change: RecordingChanged) -> None:
        for callback in list(self._listeners):
            try:
                callback(change)
            except Exception:
                log.exception("recording listener failed on %r", change)

    def _event(
        self,
        type: str,
        course_id: uuid.UUID,
        session_id: uuid.UUID,
        recording_id: uuid.UUID,
        **data: Any,
    ) -> None:
        if self.events is not None:
            self.events(type, course_id, session_id, {"recording_id": recording_id, **data})

    def _upload_outcome(self, recording_id: uuid.UUID, outcome: str, error: str | None) -> None:
        self._spawn(self._announce_outcome(recording_id, outcome, error))

    async def _announce_outcome(
        self, recording_id: uuid.UUID, outcome: str, error: str | None
    ) -> None:
        owner = await recordings.owner(self.pool, recording_id)
        if owner is not None:
            data = {"error": error} if error else {}
            self._event(f"recording.{outcome}", owner[1], owner[0], recording_id, **data)

    def recording_of(self, session_id: uuid.UUID) -> Active | None:
        return self.active.get(session_id)

    async def start_recording(
        self, session_id: uuid.UUID, started_by: uuid.UUID | None
    ) -> uuid.UUID:
        """Start recording a live session's room: NotLive / AlreadyRecording otherwise."""
        if self.sfu is None:
            raise RuntimeError("the SFU is not running in this process")
        async with self._lock:
            if session_id in self.active:
                raise recordings.AlreadyRecording()
            if self.spool_error:
                raise OSError(self.spool_error)
            room_info = await recordings.live_room(self.pool, session_id)
            if room_info is None:
                raise recordings.NotLive("missing")
            recording_id = await recordings.create_recording(self.pool, session_id, started_by)
            room = self.sfu.room(room_info.room_name)
            session = RecordingSession(
                str(recording_id),
                room,
                self.spool.directory(recording_id),
                meta={
                    "session_id": str(session_id),
                    "course_id": str(room_info.course_id),
                    "started_by": str(started_by) if started_by else None,
                },
                on_error=self._error_reporter(recording_id),
            )
            try:
                session.start()
            except Exception as exc:
                await recordings.mark_failed(self.pool, recording_id, describe_error(exc))
                self._event(
                    "recording.failed",
                    room_info.course_id,
                    session_id,
                    recording_id,
                    error=describe_error(exc),
                )
                raise
            active = Active(
                recording_id,
                session_id,
                room_info.course_id,
                room_info.room_name,
                session,
                time.monotonic() + self.config.recording_max_length_s,
            )
            self.active[session_id] = active
            self._by_room[room_info.room_name] = active
        log.info("recording %s of session %s started", recording_id, session_id)
        self._emit(RecordingChanged(room_info.room_name, session_id, recording_id, "started"))
        self._event(
            "recording.started", room_info.course_id, session_id, recording_id, by=started_by
        )
        return recording_id

    async def stop_recording(
        self, session_id: uuid.UUID, reason: str = "stopped", ended: EndedReason = "stopped"
    ) -> uuid.UUID:
        """Stop, hand the files to the uploader; KeyError if not recording here.
        ``reason`` is told to the room, ``ended`` is kept in the row."""
        active = self.active.pop(session_id)
        if self._by_room.get(active.room_name) is active:
            del self._by_room[active.room_name]
        active.session.meta["ended_reason"] = ended
        manifest = active.session.stop(reason)
        error = "; ".join(manifest.get("errors") or []) or None
        await recordings.mark_uploading(
            self.pool, active.recording_id, manifest.get("duration_ms"), error, ended
        )
        self.uploader.submit(active.recording_id)
        log.info("recording %s stopped (%s)", active.recording_id, reason)
        self._emit(
            RecordingChanged(active.room_name, session_id, active.recording_id, "stopped", reason)
        )
        self._event(
            "recording.stopped", active.course_id, session_id, active.recording_id, reason=ended
        )
        return active.recording_id

    # --- SFU events and periodic work ---------------------------------------------------------

    def _error_reporter(self, recording_id: uuid.UUID) -> Callable[[str], None]:
        def report(reason: str) -> None:
            self._spawn(recordings.note_error(self.pool, recording_id, reason, failed=False))

        return report

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_sfu_event(self, event: Event) -> None:
        from vtp.sfu import events

        if isinstance(event, events.StreamAdded):
            active = self._by_room.get(event.room)
            if active is not None:
                active.session.stream_added(event.stream_id)
            else:
                self._spawn(self._auto_record(event.room))
        elif isinstance(event, events.StreamRemoved):
            active = self._by_room.get(event.room)
            if active is not None:
                active.session.stream_removed(event.stream_id)
        elif isinstance(event, events.RoomClosed):
            active = self._by_room.get(event.room)
            if active is not None:
                self._spawn(self._stop_quietly(active.session_id, "room closed", "session_ended"))

    async def _stop_quietly(self, session_id: uuid.UUID, reason: str, ended: EndedReason) -> None:
        if session_id in self.active:
            try:
                await self.stop_recording(session_id, reason, ended)
            except Exception:
                log.exception("recorder: stopping the recording of %s failed", session_id)

    async def _auto_record(self, room_name: str) -> None:
        try:
            room = await recordings.live_room_by_name(self.pool, room_name)
            if room is None or room.status != "live":
                return
            if room.session_id in self._auto_checked or room.session_id in self.active:
                return
            self._auto_checked.add(room.session_id)
            last = await recordings.last_recording(self.pool, room.session_id)
            if last is not None and last["ended_reason"] == "server_stopping":
                # the class goes on after its node stopped (drained, restarted): so does
                # its recording, as a new part, on the node now holding the room
                log.info("recorder: session %s was recorded when its node stopped", room.session_id)
                await self.start_recording(room.session_id, last["started_by"])
            elif last is None and room.auto_record:
                await self.start_recording(room.session_id, None)
            # (recorded before and stopped by someone, or the session ended: not again)
        except (recordings.AlreadyRecording, recordings.NotLive):
            return
        except Exception:
            log.exception("recorder: automatic start in room %s failed", room_name)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            for session_id, active in list(self.active.items()):
                try:
                    active.session.tick()
                except Exception:
                    log.exception("recording %s tick failed", active.recording_id)
                if now >= active.deadline:
                    await self._stop_quietly(session_id, "maximum length reached", "max_length")

    # --- health ---------------------------------------------------------------------------

    def health(self) -> ComponentHealth:
        started = time.perf_counter()
        problems: list[str] = []
        if self.spool_error:
            problems.append(self.spool_error)
        else:
            try:
                root = self.spool.root
                if not os.access(root, os.W_OK | os.X_OK):
                    problems.append(f"spool {root} is not writable")
                elif self.spool.free_bytes() < LOW_DISK_BYTES:
                    problems.append(
                        f"spool {root}: disk almost full "
                        f"({self.spool.free_bytes() // 2**20} MiB free)"
                    )
            except OSError as exc:
                problems.append(f"spool: {describe_error(exc)}")
        for active in self.active.values():
            problems.extend(f"recording {active.recording_id}: {e}" for e in active.session.errors)
        waiting = [(rid, p) for rid, p in self.uploader.waiting().items() if p.error]
        if waiting:
            rid, state = waiting[-1]
            problems.append(
                f"{len(waiting)} recording upload(s) waiting to retry; last: {rid}: {state.error}"
            )
        latency = round((time.perf_counter() - started) * 1000, 2)
        return ComponentHealth(
            "recorder",
            not problems,
            latency,
            "spool+" + self.store.name,
            "; ".join(problems) or None,
        )
