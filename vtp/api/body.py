"""Reading a JSON request body into a typed schema."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from vtp.api.errors import ApiError, validation_details
from vtp.jsonlimits import TooDeep, loads

M = TypeVar("M", bound=BaseModel)


async def read_json(request: web.Request, model: type[M], *, optional: bool = False) -> M:
    raw = await request.read()  # aiohttp enforces client_max_size here (413)
    if not raw.strip():
        if optional:
            return model()
        raise ApiError(400, "empty_body", "request body must be a JSON object")
    content_type = request.content_type
    acceptable = content_type in ("application/json", "") or content_type.endswith("+json")
    if not acceptable:
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        data = loads(raw)
    except TooDeep as exc:
        raise ApiError(400, "invalid_json", f"body is not acceptable JSON: {exc}") from exc
    except ValueError as exc:  # UnicodeDecodeError, json.JSONDecodeError
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(
            400, "validation_error", "request body is invalid", validation_details(exc)
        ) from exc
