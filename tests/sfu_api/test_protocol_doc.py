"""docs/protocol.md matches the code: every message, field, error code and route."""

from __future__ import annotations

import re
from pathlib import Path

from vtp.app import create_app
from vtp.config import Config
from vtp.signalling import messages

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()


def section(title: str) -> str:
    """The text under the heading `title` (any level) up to the next heading."""
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ |\Z)", DOC, re.M | re.S)
    assert match, f"docs/protocol.md has no section {title!r}"
    return match.group(1)


def test_every_message_and_field_is_documented() -> None:
    models = [*messages.CLIENT_MESSAGES, *messages.SERVER_MESSAGES]
    assert len({messages.message_type(m) for m in models}) == len(models)
    for model in models:
        kind = messages.message_type(model)
        text = section(f"`{kind}`")
        for field in model.model_fields:
            if field != "type":
                assert f'"{field}"' in text, f"field {field!r} of {kind!r} not documented"
    documented = set(re.findall(r"^#### `([a-z-]+)`$", DOC, re.M))
    assert documented == {messages.message_type(m) for m in models}, "doc lists other messages"
    structures = section("Messages")
    for model in (messages.PeerInfo, messages.TrackDesc):
        for field in model.model_fields:
            assert f'"{field}"' in structures, field


def test_every_error_code_is_documented() -> None:
    table = section("Errors")
    codes = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))
    assert codes == set(messages.ERROR_CODES)


def test_every_route_is_documented(config: Config) -> None:
    app = create_app(config)
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith(("/api/v1/sfu", "/api/v1/whip", "/api/v1/whep"))
        and route.method != "HEAD"
    }
    assert ("GET", "/api/v1/sfu/ws") in routes
    for method, path in routes:
        if method == "OPTIONS":
            assert "`OPTIONS` on both" in DOC and "`OPTIONS` on each" in DOC
        elif path != "/api/v1/sfu/ws":
            assert f"`{method} {path}" in DOC or f"| `{method} {path}`" in DOC, (method, path)
    assert "`GET /api/v1/sfu/ws`" in DOC
