"""Security headers on every response, and the Content-Security-Policy of the pages.

Pages load only same-origin scripts and styles (the templates hold no inline script), may
not be framed, and send no Referer. Recording playback may come from the S3 endpoint
(presigned URLs), so that origin is allowed as a media source. The SFU's manual test
page (`static/sfu-test.html`, served only with `VTP_DEV_PAGES`) keeps its inline script.
"""

from __future__ import annotations

from aiohttp import web

from vtp.config import Config
from vtp.storage.s3 import split_endpoint

DEV_TEST_PAGE = "/static/sfu-test.html"


def content_security_policy(config: Config, *, inline_script: bool = False) -> str:
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
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def setup(app: web.Application, config: Config) -> None:
    page_policy = content_security_policy(config)
    dev_policy = content_security_policy(config, inline_script=True)

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        if response.content_type == "text/html":
            dev_page = request.path == DEV_TEST_PAGE
            headers.setdefault("Content-Security-Policy", dev_policy if dev_page else page_policy)
            headers.setdefault("X-Frame-Options", "DENY")

    app.on_response_prepare.append(add_headers)
