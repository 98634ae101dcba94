"""The OpenAPI 3.1 description of /api, generated from the live route table.

Nothing is declared twice: for every /api route of the application the generator reads

* the path and method from the router, path parameters from the `{name}` segments;
* who may call it from the handler's access rule (`vtp.api.access`, `course_access.who`);
* the summary and description from the handler's docstring;
* the request body, query parameters, success statuses, answer model and media type,
  and error statuses from its `@endpoint(...)` declaration (`vtp.api.endpoint`), the
  same declaration that reads its input and serialises its answer.

So a new route appears in the document by existing, and `tests/domain/test_openapi.py`
fails if any route is missing from it or declares nothing.
"""

from __future__ import annotations

import html
import inspect
import json
import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from vtp.api.access import access_of, public
from vtp.api.course_access import who_of
from vtp.api.endpoint import Endpoint, endpoint, endpoint_of

routes = web.RouteTableDef()

_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
        }
    },
}
ERROR_TEXT = {
    400: "invalid input (the JSON error envelope names the fields)",
    401: "not signed in",
    403: "signed in, but not allowed",
    404: "not found, or not visible to the caller",
    409: "conflicts with the current state",
    413: "the body or file is too large",
    415: "unsupported media or file type",
    422: "well-formed but unacceptable",
    429: "too many attempts; see Retry-After",
    503: "a backing service is unavailable",
}
UNDECLARED = Endpoint()


def error_codes(handler: Any) -> frozenset[int]:
    """The error statuses a handler can answer: those it declares, those its input
    implies, and 401/403 from its access rule."""
    codes = set((endpoint_of(handler) or UNDECLARED).error_statuses())
    rule = access_of(handler)
    if rule is not None and not rule.public:
        codes.add(401)
        if rule.roles is not None:
            codes.add(403)
    return frozenset(codes)


class _Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {"Error": ERROR_SCHEMA}

    def ref(self, model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            self.components.setdefault(name, sub)
        self.components.setdefault(model.__name__, schema)
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    def query_parameters(self, model: type[BaseModel]) -> list[dict[str, Any]]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            self.components.setdefault(name, sub)
        required = set(schema.get("required", []))
        params = []
        for name, prop in schema.get("properties", {}).items():
            param: dict[str, Any] = {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": {k: v for k, v in prop.items() if k not in ("title", "description")},
            }
            if "description" in prop:
                param["description"] = prop["description"]
            params.append(param)
        return params


def _docstring(handler: Any) -> tuple[str, str]:
    doc = inspect.getdoc(handler) or ""
    first, _, rest = doc.partition("\n")
    name = getattr(handler, "__name__", "handler").replace("_", " ")
    return (first.strip() or name), rest.strip()


def _operation(
    schemas: _Schemas, method: str, path: str, handler: Any
) -> tuple[str, dict[str, Any]]:
    info = endpoint_of(handler) or UNDECLARED
    rule = access_of(handler)
    summary, description = _docstring(handler)
    who = rule.describe() if rule else "unspecified"
    course_rule = who_of(handler)
    if course_rule:
        who = f"{who}; {course_rule}"
    op: dict[str, Any] = {
        "operationId": f"{handler.__module__.rsplit('.', 1)[-1]}_{handler.__name__}",
        "summary": summary,
        "description": (description + "\n\n" if description else "") + f"Access: {who}.",
        "tags": [handler.__module__.rsplit(".", 1)[-1]],
        "x-access": who,
    }
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid"}
            if name.endswith("_id")
            else {"type": "string"},
        }
        for name in _PARAM.findall(path)
    ]
    if info.query is not None:
        params += schemas.query_parameters(info.query)
    if info.upload:
        params.append(
            {
                "name": "filename",
                "in": "query",
                "required": True,
                "schema": {"type": "string", "minLength": 1, "maxLength": 200},
            }
        )
        op["requestBody"] = {
            "required": True,
            "content": {"application/octet-stream": {"schema": {}}},
        }
    if params:
        op["parameters"] = params
    if info.body is not None:
        op["requestBody"] = {
            "required": not info.optional_body,
            "content": {"application/json": {"schema": schemas.ref(info.body)}},
        }
    if rule is not None and not rule.public:
        op["security"] = [{"bearerAuth": []}]
    else:
        op["security"] = []
    ok: dict[str, Any] = {"description": "success"}
    if info.status == 204 or info.media is None:
        pass
    elif info.media == "application/json":
        schema = schemas.ref(info.returns) if info.returns is not None else {}
        ok["content"] = {"application/json": {"schema": schema}}
    elif info.media == "text/csv":
        ok["content"] = {"text/csv": {"schema": {"type": "string"}}}
    else:
        ok["content"] = {info.media: {"schema": {}}}
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    responses: dict[str, Any] = {str(status): ok for status in info.statuses}
    for code in sorted(error_codes(handler)):
        responses[str(code)] = {"description": ERROR_TEXT.get(code, "error"), **error}
    op["responses"] = responses
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", path), op


def build_document(app: web.Application) -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method in ("HEAD", "OPTIONS", "*"):
            continue
        canonical = resource.canonical
        if not canonical.startswith("/api/"):
            continue
        path, op = _operation(schemas, route.method, canonical, route.handler)
        paths.setdefault(path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "VTP API",
            "version": "1",
            "description": "The VTP virtual teaching platform's REST API. Every failure "
            "answers with the JSON error envelope "
            '`{"error": {"code", "message", "details"}}`. Lists answer '
            '`{"items": [...], "next_cursor": str | null}`; pass `cursor` to get the '
            "next page.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


@routes.get("/api/v1/openapi.json")
@public
@endpoint()
async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this API."""
    return web.json_response(build_document(request.app))


@routes.get("/api/v1/docs")
@public
@endpoint(media="text/html")
async def reference_page(request: web.Request) -> web.Response:
    """A plain HTML reference rendered from the OpenAPI document (no scripts)."""
    doc = build_document(request.app)
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>VTP API reference</title>",
        # Styles come from a static file: the pages' CSP allows no inline style.
        "<link rel='stylesheet' href='/static/app/apidocs.css'></head><body>",
        f"<h1>{esc(doc['info']['title'])}</h1><p>{esc(doc['info']['description'])}</p>",
        "<p>Machine-readable: <a href='/api/v1/openapi.json'>openapi.json</a></p>",
    ]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            parts.append(
                f"<h3><span class='m'>{esc(method.upper())}</span><code>{esc(path)}</code></h3>"
                f"<p>{esc(op['summary'])}<br><small>{esc(op['x-access'])}</small></p>"
            )
            params = [p for p in op.get("parameters", []) if p["in"] == "query"]
            if params:
                names = ", ".join(esc(p["name"]) for p in params)
                parts.append(f"<p>Query: <code>{names}</code></p>")
            body = op.get("requestBody", {}).get("content", {})
            ref = body.get("application/json", {}).get("schema", {}).get("$ref")
            if ref:
                name = ref.rsplit("/", 1)[-1]
                schema = doc["components"]["schemas"][name]
                parts.append(f"<pre>{esc(json.dumps(schema, indent=1))}</pre>")
            codes = ", ".join(sorted(op["responses"]))
            parts.append(f"<p><small>Responses: {esc(codes)}</small></p>")
    parts.append("</body></html>")
    return web.Response(text="".join(parts), content_type="text/html")
