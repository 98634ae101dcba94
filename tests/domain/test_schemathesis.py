"""schemathesis against openapi.json: generated requests to every teaching-domain
operation, as an admin, with a bounded number of examples; no 5xx on any of them, and
every successful JSON answer matches its documented schema.

Skipped where schemathesis is not installed (it is not a declared test dependency yet:
`pip install schemathesis` to run it). The app runs on a real socket in a thread of its
own, because schemathesis calls it synchronously.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from pydantic import BaseModel, ValidationError

from vtp.api.endpoint import answer_model
from vtp.api.teaching_routes import ROUTE_TABLES

pytestmark = pytest.mark.slow
EXAMPLES = 15


class Server:
    """The VTP app on 127.0.0.1:<random port>, seeded with one of everything."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.ready = threading.Event()
        self.base_url = ""
        self.token = ""
        self.ids: dict[str, str] = {}
        self.error: BaseException | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:  # reported to the test thread
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    async def _start(self) -> None:
        from aiohttp import web

        from vtp.app import create_app
        from vtp.appkeys import DB, TOKENS

        app = create_app(self.config)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        pool = app[DB]
        async with pool.acquire() as conn:
            admin = await conn.fetchval(
                """INSERT INTO users (email, display_name, password_hash, role)
                   VALUES ('admin@fuzz.test', 'Admin', 'x', 'admin') RETURNING id"""
            )
            student = await conn.fetchval(
                """INSERT INTO users (email, display_name, password_hash)
                   VALUES ('student@fuzz.test', 'Student', 'x') RETURNING id"""
            )
            course = await conn.fetchval(
                "INSERT INTO courses (code, title, owner_id) VALUES ('F1', 'F', $1) RETURNING id",
                admin,
            )
            await conn.execute(
                "INSERT INTO course_enrollments (course_id, user_id) VALUES ($1, $2)",
                course,
                student,
            )
            session = await conn.fetchval(
                """INSERT INTO live_sessions (course_id, host_id, title, status,
                       scheduled_start, scheduled_end, started_at)
                   VALUES ($1, $2, 'S', 'live', now(), now() + interval '1 hour', now())
                   RETURNING id""",
                course,
                admin,
            )
            assignment = await conn.fetchval(
                """INSERT INTO assignments (course_id, title, status)
                   VALUES ($1, 'A', 'published') RETURNING id""",
                course,
            )
            submission = await conn.fetchval(
                """INSERT INTO submissions (assignment_id, student_id, status, submitted_at)
                   VALUES ($1, $2, 'submitted', now()) RETURNING id""",
                assignment,
                student,
            )
            lesson = await conn.fetchval(
                "INSERT INTO lessons (course_id, position, title) VALUES ($1, 0, 'L') RETURNING id",
                course,
            )
            message = await conn.fetchval(
                "INSERT INTO chats (course_id, author_id, body) VALUES ($1, $2, 'hi') RETURNING id",
                course,
                admin,
            )
            recording = await conn.fetchval(
                "INSERT INTO recordings (session_id) VALUES ($1) RETURNING id", session
            )
        self.token = app[TOKENS].issue(admin, "admin").to_json()["access_token"]
        self.ids = {
            "course_id": str(course),
            "session_id": str(session),
            "assignment_id": str(assignment),
            "submission_id": str(submission),
            "lesson_id": str(lesson),
            "message_id": str(message),
            "recording_id": str(recording),
            "user_id": str(student),
            "file_id": str(uuid.uuid4()),
        }

    def __enter__(self) -> Server:
        self.thread.start()
        self.ready.wait(60)
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


@dataclass
class Tally:
    failures: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)


def fuzz(operation: Any, shape: type[BaseModel] | None, server: Server, tally: Tally) -> None:
    """EXAMPLES generated requests to one operation (real ids in about half)."""
    from hypothesis import HealthCheck, Phase, given, settings, strategies

    headers = {"Authorization": f"Bearer {server.token}"}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), real_ids=strategies.booleans())
    def check(case: Any, real_ids: bool) -> None:
        if real_ids and case.path_parameters:
            case.path_parameters = {
                k: server.ids.get(k, v) for k, v in case.path_parameters.items()
            }
        response = case.call(base_url=server.base_url, headers=headers, timeout=30)
        tally.statuses[response.status_code] = tally.statuses.get(response.status_code, 0) + 1
        where = f"{case.method} {case.formatted_path} {case.query} {case.body!r:.200}"
        if response.status_code >= 500:
            tally.failures.append(f"{where} -> {response.status_code} {response.text:.300}")
        json_answer = response.headers.get("Content-Type", "").startswith("application/json")
        if 200 <= response.status_code < 300 and json_answer and shape is not None:
            try:  # the answer matches its documented schema
                shape.model_validate(response.json())
            except ValidationError as exc:
                tally.failures.append(f"{where}: {exc}")

    check()


def test_schemathesis_finds_no_server_errors(config: Any) -> None:
    import requests

    handlers = {(r.method, r.path): r.handler for table in ROUTE_TABLES for r in table}
    with Server(config) as server:
        doc = requests.get(server.base_url + "/api/v1/openapi.json", timeout=30).json()
        schema = schemathesis.openapi.from_dict(doc)
        tally = Tally()
        checked = 0
        for path, ops in doc["paths"].items():
            for method in ops:
                handler = handlers.get((method.upper(), path))
                if handler is not None:
                    fuzz(schema[path][method.upper()], answer_model(handler), server, tally)
                    checked += 1
        assert checked == len(handlers)
        statuses = tally.statuses
        # Enough requests were made, and some got past validation to the handlers.
        assert sum(statuses.values()) >= checked * 5, statuses
        assert sum(n for code, n in statuses.items() if code < 300) > 0, statuses
        print("schemathesis statuses:", dict(sorted(statuses.items())))
        assert tally.failures == [], "\n".join(tally.failures[:20])
