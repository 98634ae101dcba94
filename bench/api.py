"""API benchmark: requests/s and p50/p99 latency with C concurrent clients.

    python bench/api.py [--clients 50] [--requests 1000] [--bcrypt-cost 12]
                        [--database-url postgresql://...] [--redis-url redis://...]

Starts the VTP app in this process on a random local port (with the given PostgreSQL
and Redis, or the embedded ones), seeds a course with a teacher, C students (one per
client) and an assignment, then runs four phases, each `--requests` requests spread
over `--clients` concurrent HTTP clients:

* login         POST /api/v1/auth/login (bcrypt at --bcrypt-cost dominates)
* course list   GET  /api/v1/courses
* upload        POST /api/v1/submissions/{id}/files (a 64 KiB PDF; each client uses its
                own draft and starts a new attempt every 10 files, untimed)
* gradebook     GET  /api/v1/courses/{id}/gradebook (teacher; 100k-row scale is in
                tests/domain/test_explain.py, here the course has C students)

The per-address login rate limit is raised for the run (every client is 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vtp.app import create_app
from vtp.appkeys import DB, HASHER
from vtp.config import load_config

PASSWORD = "bench password 123"
PDF = b"%PDF-1.4\n" + b"0" * (64 * 1024 - 16) + b"\n%%EOF\n"


@dataclass
class Client:
    email: str
    token: str = ""
    submission_id: str = ""
    files: int = 0


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0

    def row(self) -> str:
        lat = sorted(self.latencies)
        if not lat:
            return f"{self.name:<12} no successful requests ({self.errors} errors)"
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        rps = len(lat) / self.elapsed if self.elapsed else 0.0
        return f"{self.name:<12} {len(lat):>7} {self.errors:>6} {rps:>9.1f} {p50:>9.1f} {p99:>9.1f}"


async def seed(app: web.Application, clients: int) -> tuple[str, list[Client], str, str]:
    """A teacher, `clients` students enrolled in one course, a published assignment."""
    pool = app[DB]
    password_hash = await app[HASHER].hash(PASSWORD)
    tag = uuid.uuid4().hex[:8]
    teacher_email = f"teacher-{tag}@bench.test"
    async with pool.acquire() as conn, conn.transaction():
        teacher = await conn.fetchval(
            """INSERT INTO users (email, display_name, password_hash, role)
               VALUES ($1, 'Teacher', $2, 'teacher') RETURNING id""",
            teacher_email,
            password_hash,
        )
        course = await conn.fetchval(
            "INSERT INTO courses (code, title, owner_id) VALUES ($1, 'Bench', $2) RETURNING id",
            f"BENCH-{tag}",
            teacher,
        )
        await conn.execute(
            "INSERT INTO course_enrollments (course_id, user_id, role) VALUES ($1, $2, 'teacher')",
            course,
            teacher,
        )
        students = []
        for i in range(clients):
            email = f"s{i}-{tag}@bench.test"
            uid = await conn.fetchval(
                """INSERT INTO users (email, display_name, password_hash)
                   VALUES ($1, $2, $3) RETURNING id""",
                email,
                f"Student {i}",
                password_hash,
            )
            await conn.execute(
                "INSERT INTO course_enrollments (course_id, user_id) VALUES ($1, $2)", course, uid
            )
            students.append(Client(email))
        assignment = await conn.fetchval(
            """INSERT INTO assignments (course_id, title, status, points_possible,
                                        max_file_bytes)
               VALUES ($1, 'Bench work', 'published', 10, 1048576) RETURNING id""",
            course,
        )
    return teacher_email, students, str(course), str(assignment)


async def run_phase(
    name: str,
    clients: list[Client],
    total: int,
    one: Callable[[Client], Awaitable[bool]],
    prepare: Callable[[Client], Awaitable[None]] | None = None,
) -> Result:
    """`one` is timed; `prepare` (untimed) runs before each request."""
    result = Result(name)
    per_client = [
        total // len(clients) + (1 if i < total % len(clients) else 0) for i in range(len(clients))
    ]

    async def worker(client: Client, count: int) -> None:
        for _ in range(count):
            if prepare is not None:
                await prepare(client)
            started = time.perf_counter()
            ok = await one(client)
            if ok:
                result.latencies.append(time.perf_counter() - started)
            else:
                result.errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(c, n) for c, n in zip(clients, per_client, strict=True)))
    result.elapsed = time.perf_counter() - started
    return result


async def main(args: argparse.Namespace) -> None:
    state = Path(tempfile.mkdtemp(prefix="vtp-bench-"))
    overrides: dict[str, Any] = {
        "state_dir": state,
        "bcrypt_cost": args.bcrypt_cost,
        "login_ip_max_attempts": 10**9,
        "log_level": "WARNING",
        "db_pool_max": max(10, args.clients // 2),
        "ice_udp_port": 0,  # (no media here: a free port, never a running server's)
    }
    if args.database_url:
        overrides["database_url"] = args.database_url
    if args.redis_url:
        overrides["redis_url"] = args.redis_url
    app = create_app(load_config(**overrides))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    try:
        teacher_email, clients, course_id, assignment_id = await seed(app, args.clients)
        connector = aiohttp.TCPConnector(limit=args.clients * 2)
        async with aiohttp.ClientSession(base, connector=connector) as http:

            async def login(c: Client) -> bool:
                async with http.post(
                    "/api/v1/auth/login", json={"email": c.email, "password": PASSWORD}
                ) as resp:
                    if resp.status != 200:
                        return False
                    c.token = (await resp.json())["access_token"]
                    return True

            async def course_list(c: Client) -> bool:
                async with http.get(
                    "/api/v1/courses", headers={"Authorization": f"Bearer {c.token}"}
                ) as resp:
                    await resp.read()
                    return resp.status == 200

            async def new_draft(c: Client) -> None:
                headers = {"Authorization": f"Bearer {c.token}"}
                if c.submission_id:
                    async with http.post(
                        f"/api/v1/submissions/{c.submission_id}/submit", headers=headers
                    ) as resp:
                        await resp.read()
                async with http.post(
                    f"/api/v1/assignments/{assignment_id}/submissions", json={}, headers=headers
                ) as resp:
                    c.submission_id = (await resp.json())["id"]
                    c.files = 0

            async def draft_with_room(c: Client) -> None:
                if not c.submission_id or c.files >= 10:
                    await new_draft(c)

            async def upload(c: Client) -> bool:
                async with http.post(
                    f"/api/v1/submissions/{c.submission_id}/files",
                    params={"filename": "work.pdf"},
                    data=PDF,
                    headers={"Authorization": f"Bearer {c.token}"},
                ) as resp:
                    await resp.read()
                    c.files += 1
                    return resp.status == 201

            teacher = Client(teacher_email)
            assert await login(teacher), "teacher login failed"

            async def gradebook(c: Client) -> bool:
                async with http.get(
                    f"/api/v1/courses/{course_id}/gradebook",
                    headers={"Authorization": f"Bearer {teacher.token}"},
                ) as resp:
                    await resp.read()
                    return resp.status == 200

            # Every client needs a token before the other phases.
            results = [await run_phase("login", clients, max(args.requests, args.clients), login)]
            results.append(await run_phase("course list", clients, args.requests, course_list))
            results.append(
                await run_phase("upload", clients, args.requests, upload, draft_with_room)
            )
            results.append(await run_phase("gradebook", clients, args.requests, gradebook))
        print(
            f"{args.clients} concurrent clients, {args.requests} requests per phase, "
            f"bcrypt cost {args.bcrypt_cost}"
        )
        print(f"{'phase':<12} {'ok':>7} {'errors':>6} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9}")
        for r in results:
            print(r.row())
    finally:
        await runner.cleanup()
        shutil.rmtree(state, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--bcrypt-cost", type=int, default=12)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--redis-url", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
