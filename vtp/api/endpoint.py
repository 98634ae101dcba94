"""An endpoint is declared once, on its handler, and everything else follows from that:

    @routes.patch("/api/v1/courses/{course_id}")
    @authenticated
    @who("the course's teachers")
    @endpoint(body=CourseUpdate, returns=CourseOut, errors=(403, 404, 409))
    async def update_course(request: web.Request, read_body: ReadBody[CourseUpdate]) -> Out:
        ...  # access checks
        body = await read_body()
        ...
        return access_out(access)  # a CourseOut

* `body` / `query`: the handler is given `read_body` / `read_query`, which read and
  validate the JSON body / query string into that schema (`vtp.api.validation`). They
  read when called, not before the handler runs, so the access checks a handler makes
  first still answer first: a stranger learns "not found", not which field was wrong.
* `returns` (`many`: the paginated list envelope of it): the handler returns an
  instance of that model (or a `validation.Page` of them), serialised through it with
  the first declared success status; `reply` gives another status or headers. A
  handler that answers something else (204, CSV, a file, SDP) returns its
  `web.StreamResponse` as it is.
* `status`: the success status or statuses; `errors`: the error statuses beyond those
  implied by the access rule (401, 403), a body (400, 413, 415) or a query (400).
* `media`: the content type of a non-JSON answer, `None` for an answer with no body
  at any status (204 implies none); `upload`: the body is a raw file
  (`vtp.api.uploads.receive_file`).

`vtp.api.openapi` writes the OpenAPI document from these declarations and nothing else.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from vtp.api.validation import Page, page_of, read_body, read_query

M = TypeVar("M", bound=BaseModel)

ReadBody = Callable[[], Awaitable[M]]
ReadQuery = Callable[[], M]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_ATTR = "__vtp_endpoint__"
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Endpoint:
    body: type[BaseModel] | None = None
    optional_body: bool = False
    query: type[BaseModel] | None = None
    returns: type[BaseModel] | None = None  # the JSON answer's model (a page's, if many)
    statuses: tuple[int, ...] = (200,)
    errors: frozenset[int] = frozenset()
    media: str | None = JSON  # None: the answer has no body
    upload: bool = False

    @property
    def status(self) -> int:
        return self.statuses[0]

    def error_statuses(self) -> frozenset[int]:
        """The declared error statuses and those its input implies."""
        codes = set(self.errors)
        if self.body is not None:
            codes.update((400, 413, 415))
        if self.query is not None:
            codes.add(400)
        return frozenset(codes)


def reply(
    model: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON answer serialised through its model (fields left unset stay out)."""
    return web.Response(
        text=model.model_dump_json(exclude_unset=True),
        status=status,
        headers=headers,
        content_type=JSON,
    )


def endpoint(
    *,
    body: type[BaseModel] | None = None,
    optional_body: bool = False,
    query: type[BaseModel] | None = None,
    returns: type[BaseModel] | None = None,
    many: bool = False,
    status: int | tuple[int, ...] = 200,
    errors: tuple[int, ...] = (),
    media: str | None = JSON,
    upload: bool = False,
) -> Callable[[Callable[..., Awaitable[Any]]], Handler]:
    shape = page_of(returns) if many and returns is not None else returns
    declared = Endpoint(
        body=body,
        optional_body=optional_body,
        query=query,
        returns=shape,
        statuses=status if isinstance(status, tuple) else (status,),
        errors=frozenset(errors),
        media=media,
        upload=upload,
    )

    def wrap(handler: Callable[..., Awaitable[Any]]) -> Handler:
        ok = declared.status

        @functools.wraps(handler)
        async def run(request: web.Request) -> web.StreamResponse:
            kwargs: dict[str, Any] = {}
            if body is not None:
                kwargs["read_body"] = functools.partial(
                    read_body, request, body, optional=optional_body
                )
            if query is not None:
                kwargs["read_query"] = functools.partial(read_query, request, query)
            result = await handler(request, **kwargs)
            if isinstance(result, web.StreamResponse):
                return result
            if shape is None:
                raise TypeError(f"{handler.__qualname__} declares no JSON answer")
            if isinstance(result, Page):
                result = shape.model_validate(
                    {"items": result.items, "next_cursor": result.next_cursor}
                )
            elif not isinstance(result, shape):
                raise TypeError(f"{handler.__qualname__} answered {type(result).__name__}")
            return reply(result, ok)

        setattr(run, _ATTR, declared)
        return run

    return wrap


def endpoint_of(handler: object) -> Endpoint | None:
    value = getattr(handler, _ATTR, None)
    return value if isinstance(value, Endpoint) else None


def answer_model(handler: object) -> type[BaseModel] | None:
    """The model a handler's JSON answers are serialised through, if it declares one."""
    declared = endpoint_of(handler)
    return declared.returns if declared is not None else None
