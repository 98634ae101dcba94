"""HTTPS served by VTP itself (``vtp serve`` with ``VTP_TLS_CERT``/``VTP_TLS_KEY``).

Browsers give the camera and microphone only to secure origins, so a classroom reached
by address or domain needs HTTPS: either this, or a reverse proxy in front (see the
README's deployment guide, and :mod:`vtp.forwarded` for the proxy's client address).

* :func:`server_context` - the TLS context from the configured PEM files (TLS 1.2+);
* :func:`setup` - when TLS is on: HSTS on responses over HTTPS (``VTP_HSTS_MAX_AGE_S``)
  and, with ``VTP_HTTP_REDIRECT_PORT``, a plain-HTTP listener (a resource of the app's
  ``cleanup_ctx``) answering every request with a permanent redirect to HTTPS.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

from aiohttp import web

from vtp.appkeys import CONFIG
from vtp.config import Config


def enabled(config: Config) -> bool:
    return config.tls_cert is not None and config.tls_key is not None


def server_context(config: Config) -> ssl.SSLContext | None:
    """The server's TLS context, or None when TLS is not configured."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(config.tls_cert), str(config.tls_key))
    return context


def https_url(config: Config, request: web.Request) -> str:
    """``request``'s URL on the HTTPS listener: under ``VTP_PUBLIC_URL`` when set, else
    the name the client asked for (its Host header) with VTP's port."""
    if config.public_url and config.public_url.startswith("https://"):
        return config.public_url.rstrip("/") + str(request.rel_url)
    host = request.url.host or config.host
    if ":" in host:
        host = f"[{host}]"
    port = "" if config.port == 443 else f":{config.port}"
    return f"https://{host}{port}{request.rel_url}"


def _redirect_app(config: Config) -> web.Application:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect(https_url(config, request))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    return app


async def _hsts(request: web.Request, response: web.StreamResponse) -> None:
    max_age = request.app[CONFIG].hsts_max_age_s
    if max_age and request.secure:
        response.headers["Strict-Transport-Security"] = f"max-age={max_age}"


async def _redirect_listener(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    assert config.http_redirect_port is not None
    runner = web.AppRunner(_redirect_app(config), access_log=None)
    await runner.setup()
    try:
        # --workers: every worker binds it, as they do VTP_PORT
        await web.TCPSite(
            runner, config.host, config.http_redirect_port, reuse_port=config.reuse_port or None
        ).start()
        yield
    finally:
        await runner.cleanup()


def setup(app: web.Application) -> None:
    config = app[CONFIG]
    if not enabled(config):
        return
    if config.hsts_max_age_s:
        app.on_response_prepare.append(_hsts)
    if config.http_redirect_port is not None:
        app.cleanup_ctx.append(_redirect_listener)
