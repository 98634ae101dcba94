"""Security headers on every response, and the Content-Security-Policy of the pages.

Pages load only same-origin scripts and styles (the templates hold no inline script), may
not be framed, and send no Referer. Recording playback may come from the S3 endpoint
(presigned URLs), so that origin is allowed as a media source. With several nodes, the
browser client follows a class to the node of its room (docs/protocol.md "Several
nodes"), so pages may connect to every live node's URL in the registry (as of its last
heartbeat: ``http(s)`` for fetches, ``ws(s)`` for WebSockets, as CSP's ``http:`` source
does not cover ``ws:``) and to ``VTP_CLUSTER_ORIGINS``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from vtp.appkeys import NODES
from vtp.config import Config
from vtp.storage.s3 import split_endpoint


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


def content_security_policy(config: Config, *, nodes: frozenset[str] = frozenset()) -> str:
    media = ["'self'", "blob:"]
    if config.s3_endpoint:
        try:
            host, secure = split_endpoint(config.s3_endpoint, config.s3_secure)
        except ValueError:
            pass  # the object store refuses to start with it anyway
        else:
            media.append(f"{'https' if secure else 'http'}://{host}")
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
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
    policies: dict[frozenset[str], str] = {}

    def policy() -> str:
        registry = app.get(NODES) if config.cluster else None
        nodes = registry.urls if registry is not None else frozenset()
        found = policies.get(nodes)
        if found is None:
            if len(policies) > 64:
                policies.clear()
            found = policies[nodes] = content_security_policy(config, nodes=nodes)
        return found

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        if response.content_type == "text/html":
            headers.setdefault("Content-Security-Policy", policy())
            headers.setdefault("X-Frame-Options", "DENY")

    app.on_response_prepare.append(add_headers)
