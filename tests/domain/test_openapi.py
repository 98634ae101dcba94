"""The OpenAPI 3.1 document is generated from the route table: every /api route is in
it, with its access rule, body schema, query parameters and success status."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from helpers import assert_app_refuses_route

from vtp.api.access import authenticated
from vtp.api.endpoint import endpoint, endpoint_of
from vtp.api.openapi import build_document

ALL_METHODS = {"get", "post", "put", "patch", "delete"}


def _routes(app: web.Application) -> set[tuple[str, str]]:
    return {
        (r.method.lower(), r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith("/api/")
        and r.method.lower() in ALL_METHODS
    }


async def test_every_api_route_is_in_the_document(client: Any) -> None:
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"] == "3.1.0"
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    routes = _routes(client.server.app)
    assert len(routes) > 60
    assert routes - documented == set(), "routes missing from openapi.json"
    assert documented - routes == set(), "documented routes that do not exist"


async def test_document_is_valid_openapi_3_1(client: Any) -> None:
    import openapi_spec_validator as validator

    doc = await (await client.get("/api/v1/openapi.json")).json()
    validator.validate(doc)  # raises on an invalid document


async def test_operations_carry_schemas_access_and_status(client: Any) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    create = doc["paths"]["/api/v1/courses"]["post"]
    schema_ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schema_ref == "#/components/schemas/CourseCreate"
    course_schema = doc["components"]["schemas"]["CourseCreate"]
    assert set(course_schema["required"]) == {"code", "title"}
    assert course_schema["additionalProperties"] is False
    assert "201" in create["responses"]
    assert create["x-access"].startswith("roles: admin,teacher; ")
    listing = doc["paths"]["/api/v1/courses"]["get"]
    params = {p["name"]: p for p in listing["parameters"]}
    assert {"limit", "cursor", "scope", "status", "q"} <= set(params)
    assert params["limit"]["schema"]["maximum"] == 100
    login = doc["paths"]["/api/v1/auth/login"]["post"]
    assert login["security"] == [] and "403" not in login["responses"]
    upload = doc["paths"]["/api/v1/submissions/{submission_id}/files"]["post"]
    assert "application/octet-stream" in upload["requestBody"]["content"]
    assert any(p["name"] == "filename" for p in upload["parameters"])
    csv_op = doc["paths"]["/api/v1/courses/{course_id}/gradebook.csv"]["get"]
    assert "text/csv" in csv_op["responses"]["200"]["content"]
    delete = doc["paths"]["/api/v1/lessons/{lesson_id}"]["delete"]
    assert "204" in delete["responses"] and "content" not in delete["responses"]["204"]
    for ended in ("/api/v1/whip/{room}/{resource}", "/api/v1/whep/{room}/sessions/{resource}"):
        answer = doc["paths"][ended]["delete"]["responses"]["200"]
        assert "content" not in answer, ended  # WHIP/WHEP: 200 with an empty body
    path_param = doc["paths"]["/api/v1/lessons/{lesson_id}"]["get"]["parameters"][0]
    assert path_param == {
        "name": "lesson_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }


def test_a_new_route_appears_as_declared() -> None:
    app = web.Application()

    @authenticated
    @endpoint(status=202, errors=(409,))
    async def brand_new(request: web.Request) -> web.Response:
        """Something new."""
        return web.json_response({}, status=202)

    app.router.add_get("/api/v1/brand-new/{thing_id}", brand_new)
    doc = build_document(app)
    op = doc["paths"]["/api/v1/brand-new/{thing_id}"]["get"]
    assert op["summary"] == "Something new." and set(op["responses"]) == {"202", "401", "409"}
    assert op["security"] == [{"bearerAuth": []}]


def test_every_api_route_declares_itself(client: Any) -> None:
    undeclared = [
        f"{method} {path}"
        for method, path in _routes(client.server.app)
        if endpoint_of(_handler(client.server.app, method, path)) is None
    ]
    assert undeclared == []


def _handler(app: web.Application, method: str, path: str) -> Any:
    return next(
        r.handler
        for r in app.router.routes()
        if r.resource is not None and r.resource.canonical == path and r.method.lower() == method
    )


async def test_reference_page_lists_every_path(client: Any) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    resp = await client.get("/api/v1/docs")
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    for path in doc["paths"]:
        assert f"<code>{path}</code>" in page, path
    assert "<script" not in page


async def test_every_domain_route_says_who_may_call_it(client: Any) -> None:
    from vtp.api.course_access import who_of
    from vtp.api.teaching_routes import ROUTE_TABLES

    missing = [f"{r.method} {r.path}" for t in ROUTE_TABLES for r in t if not who_of(r.handler)]
    assert missing == []
    doc = await (await client.get("/api/v1/openapi.json")).json()
    grade = doc["paths"]["/api/v1/submissions/{submission_id}/grade"]["put"]
    assert grade["x-access"] == "authenticated; the course's teachers and TAs"
    assert "Access: authenticated; the course's teachers and TAs." in grade["description"]


def test_every_json_domain_route_declares_its_answer() -> None:
    from vtp.api.teaching_routes import ROUTE_TABLES

    undeclared = []
    for table in ROUTE_TABLES:
        for route in table:
            info = endpoint_of(route.handler)
            assert info is not None, f"{route.method} {route.path} declares nothing"
            json_answer = info.status != 204 and info.media == "application/json"
            if json_answer and info.returns is None:
                undeclared.append(f"{route.method} {route.path}")
    assert undeclared == []


async def test_error_statuses_come_from_the_declarations(client: Any) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    upload = doc["paths"]["/api/v1/submissions/{submission_id}/files"]["post"]["responses"]
    assert {"201", "400", "401", "403", "404", "409", "413", "415", "503"} <= set(upload)
    join = doc["paths"]["/api/v1/enrollments/join"]["post"]["responses"]
    assert "429" in join and "422" not in join
    login = doc["paths"]["/api/v1/auth/login"]["post"]["responses"]
    assert "429" in login and "403" not in login
    for code, response in upload.items():
        if code.startswith(("4", "5")):
            assert response["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }


def test_create_app_refuses_an_api_route_that_declares_nothing(
    config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_app_refuses_route(
        config,
        monkeypatch,
        "/api/v1/undeclared",
        r"without an @endpoint declaration: GET /api/v1/undec",
        decorate=authenticated,  # (an access rule, but no @endpoint)
    )
