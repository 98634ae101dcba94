"""Messages of a WebSocket channel: one pydantic model per message type.

Every message is a JSON object with a ``type``. A protocol declares its client messages
as models with a ``type: Literal[...]`` field and builds a :class:`MessageSet` of them,
which decodes and validates what a client sends (:meth:`MessageSet.parse`: a bad message
becomes a :class:`MessageError` with a stable code); its server messages are
:class:`ServerMessage` models, so that what is sent is what is declared.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Generic, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from vtp import jsonlimits
from vtp.api.errors import validation_details

RequestId = Annotated[str, Field(min_length=1, max_length=64)]


def message_type(model: type[BaseModel]) -> str:
    """The ``type`` literal of a message model."""
    annotation = model.model_fields["type"].annotation
    value = annotation.__args__[0]  # type: ignore[union-attr]
    assert isinstance(value, str)
    return value


class MessageError(Exception):
    """A client message that cannot be processed; becomes an ``error`` message."""

    def __init__(
        self, code: str, message: str, details: Any = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.request_id = request_id


class ServerMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)


M = TypeVar("M", bound=BaseModel)


class MessageSet(Generic[M]):
    """The client messages of one protocol, told apart by their ``type``."""

    def __init__(self, models: Iterable[type[M]]) -> None:
        self.models = tuple(models)
        self.types = frozenset(message_type(m) for m in self.models)
        assert len(self.types) == len(self.models), "two models declare one type"
        union = Union[self.models] if len(self.models) > 1 else self.models[0]  # noqa: UP007
        self._adapter: TypeAdapter[Any] = TypeAdapter(
            Annotated[union, Field(discriminator="type")]  # type: ignore[arg-type]
        )

    def parse(self, raw: str | bytes) -> M:
        """Decode and validate one client message; raises :class:`MessageError`."""
        try:
            data = jsonlimits.loads(raw)
        except jsonlimits.TooDeep as exc:
            raise MessageError("invalid_json", f"message is not acceptable JSON: {exc}") from None
        except ValueError as exc:  # UnicodeDecodeError, json.JSONDecodeError
            raise MessageError("invalid_json", f"message is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise MessageError("invalid_json", "a message must be a JSON object")
        rid = data.get("request_id")
        request_id = rid if isinstance(rid, str) and 0 < len(rid) <= 64 else None
        kind = data.get("type")
        if not isinstance(kind, str):
            raise MessageError(
                "validation_error",
                "a message needs a string field 'type'",
                [{"field": "type", "message": "missing or not a string"}],
                request_id,
            )
        if kind not in self.types:
            raise MessageError(
                "unknown_type", f"unknown message type {kind[:40]!r}", None, request_id
            )
        try:
            message: M = self._adapter.validate_python(data)
        except ValidationError as exc:
            details = [d for d in validation_details(exc) if d["field"] != "type"]
            for d in details:  # drop the discriminator prefix ("publish.sdp" -> "sdp")
                d["field"] = d["field"].removeprefix(f"{kind}.")
            raise MessageError(
                "validation_error", f"invalid {kind!r} message", details, request_id
            ) from None
        return message
