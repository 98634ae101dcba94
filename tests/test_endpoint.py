"""`@endpoint`: what a handler declares is what it reads, answers and documents."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from pydantic import Field

from vtp.api.endpoint import ReadBody, ReadQuery, endpoint, endpoint_of, reply
from vtp.api.errors import not_found
from vtp.api.middleware import error_middleware
from vtp.api.openapi import build_document
from vtp.api.validation import Body, ListQuery, Out, Page, may_be_absent


class ThingIn(Body):
    name: str = Field(min_length=1, max_length=10)


class ThingOut(Out):
    name: str
    secret: str = may_be_absent()


class OtherOut(Out):
    x: int


@endpoint(body=ThingIn, returns=ThingOut, status=(201, 202), errors=(404,))
async def make_thing(request: web.Request, read_body: ReadBody[ThingIn]) -> Out | web.Response:
    """Make a thing."""
    if request.query.get("hidden"):
        raise not_found("no such place")  # before the body is read
    body = await read_body()
    if body.name == "later":
        return reply(ThingOut(name=body.name), 202)
    if body.name == "staff":
        return ThingOut(name=body.name, secret="s3")
    return ThingOut(name=body.name)


@endpoint(query=ListQuery, returns=ThingOut, many=True)
async def list_things(request: web.Request, read_query: ReadQuery[ListQuery]) -> Page:
    query = read_query()
    return Page([ThingOut(name=str(i)) for i in range(query.limit)], None)


@endpoint(returns=ThingOut)
async def wrong_answer(request: web.Request) -> Out:
    return OtherOut(x=1)


def app() -> web.Application:
    application = web.Application(middlewares=[error_middleware])
    application.router.add_post("/api/v1/things", make_thing)
    application.router.add_get("/api/v1/things", list_things)
    application.router.add_get("/api/v1/wrong", wrong_answer)
    return application


@pytest.fixture
async def things(aiohttp_client: Any) -> Any:
    return await aiohttp_client(app())


async def test_the_answer_is_serialised_through_its_model(things: Any) -> None:
    resp = await things.post("/api/v1/things", json={"name": "a"})
    assert resp.status == 201 and resp.content_type == "application/json"
    assert await resp.json() == {"name": "a"}  # a field left unset stays out
    resp = await things.post("/api/v1/things", json={"name": "staff"})
    assert await resp.json() == {"name": "staff", "secret": "s3"}
    resp = await things.post("/api/v1/things", json={"name": "later"})
    assert resp.status == 202 and await resp.json() == {"name": "later"}


async def test_the_body_is_read_when_the_handler_asks(things: Any) -> None:
    resp = await things.post("/api/v1/things", json={"name": ""})
    assert resp.status == 400
    assert (await resp.json())["error"]["details"][0]["field"] == "name"
    # A check the handler makes first answers first: "not found", not which field.
    resp = await things.post("/api/v1/things?hidden=1", json={"name": ""})
    assert resp.status == 404


async def test_queries_and_pages(things: Any) -> None:
    resp = await things.get("/api/v1/things?limit=2")
    assert await resp.json() == {"items": [{"name": "0"}, {"name": "1"}], "next_cursor": None}
    resp = await things.get("/api/v1/things?limit=0")
    assert resp.status == 400


async def test_an_undeclared_answer_is_a_bug_not_a_leak(things: Any) -> None:
    resp = await things.get("/api/v1/wrong")
    assert resp.status == 500
    assert "x" not in await resp.text()


def test_the_document_is_the_declaration() -> None:
    declared = endpoint_of(make_thing)
    assert declared is not None and declared.status == 201
    doc = build_document(app())
    post = doc["paths"]["/api/v1/things"]["post"]
    assert set(post["responses"]) == {"201", "202", "400", "404", "413", "415"}
    assert post["summary"] == "Make a thing."
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ThingIn"}
    out = doc["components"]["schemas"]["ThingOut"]
    assert out["required"] == ["name"] and "default" not in out["properties"]["secret"]
    listing = doc["paths"]["/api/v1/things"]["get"]
    page = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert page == {"$ref": "#/components/schemas/ThingOutPage"}
    assert {p["name"] for p in listing["parameters"]} == {"limit", "cursor"}
