"""No 5xx on any input: every operation of openapi.json is called with inputs derived
from its own schemas - a plausible body, then each field replaced by hostile values,
wrong types, nulls and unknown fields; every query parameter with malformed values;
bad and unknown path ids; random upload bytes - as an admin (who passes every access
rule, so the handlers themselves are reached). A deterministic stand-in for running
schemathesis against the document (which CI may add on top).
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from domain_helpers import World

from vtp.api.teaching_routes import ROUTE_TABLES

pytestmark = pytest.mark.slow

HOSTILE: list[Any] = [
    None,
    "",
    " ",
    "x" * 5000,
    "\x00",
    "💥" * 50,
    -1,
    0,
    10**20,
    1.5,
    True,
    [],
    {},
    ["a"],
    {"nested": {"deep": [1, 2]}},
    "2030-13-45T99:00:00Z",
    "not-a-uuid",
    "../../etc/passwd",
]
QUERY_VALUES = ["", "-1", "0", "abc", "9" * 30, "2030-01-01T00:00:00", "%00", "true", "[]"]


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def example(doc: dict[str, Any], schema: dict[str, Any], ids: dict[str, str]) -> Any:
    """A plausible value for a schema (not always valid: patterns are ignored)."""
    schema = resolve(doc, schema)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if resolve(doc, s).get("type") != "null"]
            return example(doc, options[0], ids) if options else None
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {name: example(doc, sub, ids) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        items = schema.get("items", {})
        return [example(doc, items, ids)] if schema.get("minItems") else []
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return 1
    if kind == "boolean":
        return False
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return "2030-01-01T09:00:00Z"
        if fmt == "uuid":
            return ids.get("any", str(uuid.uuid4()))
        if fmt == "email":
            return "someone@example.org"
        return "Ab1-" + uuid.uuid4().hex[:6]
    return "x"


def bodies(doc: dict[str, Any], op: dict[str, Any], ids: dict[str, str]) -> list[Any]:
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return [None]
    schema = resolve(doc, content["application/json"]["schema"])
    base = example(doc, schema, ids)
    out: list[Any] = [base, {}, [], "text", {**base, "unexpected": 1}]
    for name in schema.get("properties", {}):
        for value in HOSTILE:
            mutated = copy.deepcopy(base)
            mutated[name] = value
            out.append(mutated)
    return out


async def test_no_operation_answers_5xx(world: World, db: Any) -> None:
    w = world
    doc = await w.ok(None, "GET", "/api/v1/openapi.json")
    # Real ids so the handlers get past their lookups.
    session = await w.ok(
        w.teacher,
        "POST",
        f"/api/v1/courses/{w.course_id}/sessions",
        {
            "title": "S",
            "scheduled_start": "2030-01-01T09:00:00Z",
            "scheduled_end": "2030-01-01T10:00:00Z",
        },
        201,
    )
    assignment = await w.ok(
        w.teacher,
        "POST",
        f"/api/v1/courses/{w.course_id}/assignments",
        {"title": "A", "status": "published"},
        201,
    )
    submission = await w.ok(
        w.student, "POST", f"/api/v1/assignments/{assignment['id']}/submissions", {}, 201
    )
    lesson = await w.ok(
        w.teacher, "POST", f"/api/v1/courses/{w.course_id}/lessons", {"title": "L"}, 201
    )
    message = await w.ok(
        w.student, "POST", f"/api/v1/courses/{w.course_id}/chat", {"body": "hi"}, 201
    )
    recording = await db.fetchval(
        "INSERT INTO recordings (session_id) VALUES ($1::uuid) RETURNING id", session["id"]
    )
    ids = {
        "course_id": w.course_id,
        "session_id": session["id"],
        "assignment_id": assignment["id"],
        "submission_id": submission["id"],
        "lesson_id": lesson["id"],
        "message_id": message["id"],
        "recording_id": str(recording),
        "user_id": w.student.user_id,
        "file_id": str(uuid.uuid4()),
        "any": w.student.user_id,
    }
    failures: list[str] = []
    calls = 0

    async def call(method: str, path: str, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        resp = await w.client.request(method, path, headers=w.admin.headers, **kwargs)
        if resp.status >= 500:
            failures.append(f"{method} {path} {kwargs} -> {resp.status} {await resp.text()}")

    # The teaching-domain routes (other areas' routes have their own tests).
    domain = {(r.method, r.path) for table in ROUTE_TABLES for r in table}
    operations = [
        (path, method.upper(), op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if (method.upper(), path) in domain
    ]
    assert len(operations) == len(domain)
    operations.sort(key=lambda item: item[1] == "DELETE")  # deletions last
    for path, method, op in operations:
        real = path.format(**{k: v for k, v in ids.items()})
        for bad in ("not-a-uuid", str(uuid.uuid4()), "%00", "0" * 36):
            if "{" in path:
                names = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
                await call(method, path.format(**dict.fromkeys(names, bad)))
        for body in bodies(doc, op, ids):
            await call(method, real, **({} if body is None else {"json": body}))
        for param in op.get("parameters", []):
            if param["in"] == "query":
                for value in QUERY_VALUES:
                    await call(method, real, params={param["name"]: value})
        if "application/octet-stream" in op.get("requestBody", {}).get("content", {}):
            for name, data in [("a.pdf", b"\xff" * 100), ("..", b"x"), ("a" * 300, b"x")]:
                await call(method, real, params={"filename": name}, data=data)
        await call(method, real, data=b"{not json")
    assert calls > 1000
    assert failures == [], "\n".join(failures[:20])
