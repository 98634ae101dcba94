"""Security headers on every response, and the Content-Security-Policy of the pages.

Pages load only same-origin scripts and styles (the templates hold no inline script), may
not be framed, and send no Referer. Recording playback may come from the S3 endpoint
(presigned URLs), so that origin is allowed as a media source. With several nodes, the
browser client follows a class to the node of its room (docs/protocol.md "Several
nodes"), so pages may connect to every live node's URL in the registry (as of its last
heartbeat: ``http(s)`` for fetches, ``ws(s)`` for WebSockets, as CSP's ``http:`` source
does not cover ``ws:``) and to ``VTP_CLUSTER_ORIGINS``. The SFU's manual test page
(`static/sfu-test.html`, served only with `VTP_DEV_PAGES`) keeps its inline script.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from vtp.appkeys import NODES
from vtp.config import Config
from vtp.storage.s3 import split_endpoint

DEV_TEST_PAGE = "/static/sfu-test.html"


def connect_sources(origins: list[str] | frozenset[str]) -> list[str]:
    """CSP sources for connections to these origins (or node URLs), fetch and WebSocket."""
    sources: list[str] = []
    for origin in sorted(origins):
        parts = urlsplit(origin)
        if not parts.netloc:
            continue
        pair = {"http": "ws", "https": "wss", "ws": "http", "wss": "https"}.get(parts.scheme)
        for scheme in (parts.scheme, pair):
            source = f"{scheme}://{parts.netloc}"
            if scheme and source not in sources:
                sources.append(source)
    return sources


def content_security_policy(
    config: Config, *, inline_script: bool = False, nodes: frozenset[str] = frozenset()
) -> str:
    media = ["'self'", "blob:"]
    if config.s3_endpoint:
        try:
            host, secure = split_endpoint(config.s3_endpoint, config.s3_secure)
        except ValueError:
            pass  # the object store refuses to start with it anyway
        else:
            media.append(f"{'https' if secure else 'http'}://{host}")
    script = "'self' 'unsafe-inline'" if inline_script else "'self'"
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src {script}",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            f"media-src {' '.join(media)}",
            " ".join(["connect-src 'self'", *connect_sources([*config.cluster_origins, *nodes])]),
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def setup(app: web.Application, config: Config) -> None:
    # (policies per set of node URLs: the set changes when a node joins or leaves)
    policies: dict[tuple[frozenset[str], bool], str] = {}

    def policy(dev_page: bool) -> str:
        registry = app.get(NODES) if config.cluster else None
        nodes = registry.urls if registry is not None else frozenset()
        key = (nodes, dev_page)
        found = policies.get(key)
        if found is None:
            if len(policies) > 64:
                policies.clear()
            found = policies[key] = content_security_policy(
                config, inline_script=dev_page, nodes=nodes
            )
        return found

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        if response.content_type == "text/html":
            dev_page = request.path == DEV_TEST_PAGE
            headers.setdefault("Content-Security-Policy", policy(dev_page))
            headers.setdefault("X-Frame-Options", "DENY")

    app.on_response_prepare.append(add_headers)
