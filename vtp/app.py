"""The aiohttp application factory: one process serving the API, signalling and SFU."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from vtp import backends, https, metrics, recorder
from vtp.api import accounts, auth, health, sfu, users, webhooks
from vtp.api.access import access_of
from vtp.api.domain import setup_domain
from vtp.api.middleware import auth_middleware, error_middleware, request_id_middleware
from vtp.appkeys import (
    AUTHORITY,
    CHAT_LIMIT_USER,
    CONFIG,
    DB,
    HASHER,
    LOGIN_BACKOFF,
    LOGIN_LIMIT_ADDRESS,
    REDIS,
    REGISTER_LIMIT_ADDRESS,
    STORE,
    TOKENS,
    WEBSOCKET_LEASES,
)
from vtp.auth.authority import AuthorityBus
from vtp.auth.passwords import PasswordHasher
from vtp.auth.ratelimit import Backoff, RateLimiter
from vtp.auth.secret import load_or_create_secret
from vtp.auth.tokens import TokenService
from vtp.config import Config
from vtp.db.migrate import apply_migrations
from vtp.events.deliverer import deliverer_ctx
from vtp.events.stream import events_ctx, events_middleware
from vtp.limits.leases import Leases
from vtp.mail import mailer_ctx
from vtp.private_files import private_dir
from vtp.web import setup as setup_web

log = logging.getLogger(__name__)


async def _state_dir_ctx(app: web.Application) -> AsyncIterator[None]:
    await asyncio.to_thread(private_dir, app[CONFIG].data_dir)
    yield


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    async with backends.database(app[CONFIG]) as pool:
        async with pool.acquire() as conn:
            applied = await apply_migrations(conn)
        if applied:
            log.info("applied %d migration(s)", len(applied))
        app[DB] = pool
        yield


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    async with backends.redis(config) as client:
        app[REDIS] = client
        secret = (
            config.jwt_secret.get_secret_value()
            if config.jwt_secret
            else load_or_create_secret(config.data_dir / "jwt_secret")
        )
        app[TOKENS] = TokenService(
            client,
            secret,
            issuer=config.jwt_issuer,
            access_ttl_s=config.access_token_ttl_s,
            refresh_ttl_s=config.refresh_token_ttl_s,
        )
        app[LOGIN_BACKOFF] = Backoff(client, "login")
        app[LOGIN_LIMIT_ADDRESS] = RateLimiter(client, "login-address")
        app[REGISTER_LIMIT_ADDRESS] = RateLimiter(client, "register-address")
        app[CHAT_LIMIT_USER] = RateLimiter(client, "chat-user")
        async with Leases(client, "websockets").running() as leases:
            app[WEBSOCKET_LEASES] = leases
            yield


async def _authority_ctx(app: web.Application) -> AsyncIterator[None]:
    """Changes of authority reach every open socket, in every process (after Redis)."""
    bus = AuthorityBus(app[REDIS])
    await bus.start()
    app[AUTHORITY] = bus
    app[TOKENS].authority = bus
    try:
        yield
    finally:
        app[TOKENS].authority = None
        await bus.close()


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    async with backends.object_store(app[CONFIG]) as store:
        app[STORE] = store
        yield


def _check_access_rules(app: web.Application) -> None:
    missing = [
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and access_of(route.handler) is None
    ]
    if missing:
        raise RuntimeError(f"API routes without an access rule: {', '.join(missing)}")


def create_app(config: Config) -> web.Application:
    app = web.Application(
        client_max_size=config.max_body_bytes,
        middlewares=[request_id_middleware, error_middleware, auth_middleware, events_middleware],
    )
    app[CONFIG] = config
    app[HASHER] = PasswordHasher(config.bcrypt_cost)
    app.cleanup_ctx.extend(
        [
            _state_dir_ctx,
            _database_ctx,
            _redis_ctx,
            events_ctx,  # the event stream; closes late, after everything that emits
            deliverer_ctx,  # webhooks out of the stream
            _authority_ctx,
            _store_ctx,
            mailer_ctx,
        ]
    )
    app.add_routes(health.routes)
    app.add_routes(auth.routes)
    app.add_routes(users.routes)
    app.add_routes(accounts.routes)  # password change, disable, reset links
    app.add_routes(webhooks.routes)  # admins' webhook endpoints and delivery logs
    setup_domain(app)
    sfu.setup(app)  # SFU core, WebSocket signalling, /api/v1/sfu REST, WHIP/WHEP
    recorder.setup(app)  # after the SFU: recordings tap its rooms
    setup_web(app)  # browser pages, /static/, the classroom live channel
    metrics.setup(app)  # /metrics, and the request counting middleware (outermost)
    https.setup(app)  # HSTS and the HTTP->HTTPS redirect listener, when TLS is on
    _check_access_rules(app)
    return app
