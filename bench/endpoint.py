"""The per-request cost of declaring endpoints with `@endpoint` (vtp.api.endpoint).

    python bench/endpoint.py [--calls 20000] [--rounds 5]

Each case runs the same work two ways, in the same process, interleaved round by round:

* plain:    a bare aiohttp handler that reads its body with `read_body`, builds the
            answer dict by hand (`row.to_json()` plus changes, the way handlers did
            before) and answers `web.json_response(dict)`;
* declared: the same handler declared with `@endpoint(body=..., returns=...)`: the
            wrapper hands it `read_body`, and it answers the `Out` model, which the
            wrapper serialises (the real `CourseOut` of vtp.api.courses).

Cases: one course (PATCH-like: a JSON body in, one object out) and a page of 50
courses (a list answer). The handlers are called directly with a mocked request, so
the figure is the layer's own cost, without the network and the server; the ratio is
declared / plain time per call (best round of each), printed with both times.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vtp.api.courses import CourseOut, CourseUpdate, course_out
from vtp.api.endpoint import ReadBody, endpoint
from vtp.api.validation import Out, Page, encode_cursor, page, read_body
from vtp.db.models import Course

BODY = b'{"title": "Signals and systems", "description": "Week 1: sampling"}'


def a_course(i: int) -> Course:
    now = datetime.now(UTC)
    return Course(
        id=uuid.uuid4(),
        code=f"SIG-{i}",
        title="Signals and systems",
        description="x" * 200,
        owner_id=uuid.uuid4(),
        status="active",
        enrollment_code="abcdef-123",
        created_at=now,
        updated_at=now,
    )


COURSE = a_course(0)
COURSES = [a_course(i) for i in range(51)]


def course_dict(course: Course, my_role: str | None, *, staff: bool) -> dict[str, Any]:
    """The hand-written builder the declared answer replaced."""
    data = course.to_json()
    if not staff:
        data.pop("enrollment_code")
    data["my_role"] = my_role
    return data


async def plain_one(request: web.Request) -> web.Response:
    body = await read_body(request, CourseUpdate)
    assert body.title
    return web.json_response(course_dict(COURSE, "teacher", staff=False))


@endpoint(body=CourseUpdate, returns=CourseOut)
async def declared_one(request: web.Request, read_body: ReadBody[CourseUpdate]) -> Out:
    body = await read_body()
    assert body.title
    return course_out(COURSE, "teacher", staff=False)


async def plain_page(request: web.Request) -> web.Response:
    rows = [course_dict(c, "student", staff=False) for c in COURSES[:50]]
    cursor = encode_cursor(COURSES[49].created_at, COURSES[49].id)
    return web.json_response({"items": rows, "next_cursor": cursor})


@endpoint(returns=CourseOut, many=True)
async def declared_page(request: web.Request) -> Page:
    return page(COURSES, 50, lambda c: course_out(c, "student", staff=False))


def request() -> web.Request:
    req = make_mocked_request("PATCH", "/", headers={"Content-Type": "application/json"})
    req._read_bytes = BODY  # what Request.read() returns once the body was read
    return req


async def per_call(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]], n: int
) -> float:
    req = request()  # one request, read once: its body is cached (mocking one costs ~1 ms)
    start = time.perf_counter()
    for _ in range(n):
        await handler(req)
    return (time.perf_counter() - start) / n


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    # Same answers both ways (apart from JSON whitespace).
    import json

    for plain, declared in ((plain_one, declared_one), (plain_page, declared_page)):
        a = await plain(request())
        b = await declared(request())
        assert isinstance(a, web.Response) and isinstance(b, web.Response)
        assert a.text is not None and b.text is not None
        assert json.loads(a.text) == json.loads(b.text), f"{plain.__name__}: answers differ"
    cases = {
        "one course (body in, object out)": (plain_one, declared_one, args.calls),
        "page of 50 courses": (plain_page, declared_page, max(args.calls // 20, 100)),
    }
    for name, (plain, declared, n) in cases.items():
        best_plain = best_declared = float("inf")
        for _ in range(args.rounds):
            best_plain = min(best_plain, await per_call(plain, n))
            best_declared = min(best_declared, await per_call(declared, n))
        print(
            f"{name:36s} plain {best_plain * 1e6:8.1f} us  declared {best_declared * 1e6:8.1f} us"
            f"  ratio {best_declared / best_plain:5.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
