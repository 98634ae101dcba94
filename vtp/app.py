"""The aiohttp application factory: one process serving the API, signalling and SFU."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from vtp import backends, https, metrics, routes, signalling
from vtp.api.access import access_of
from vtp.api.endpoint import endpoint_of
from vtp.api.middleware import auth_middleware, error_middleware, request_id_middleware
from vtp.appkeys import (
    AUTHORITY,
    CHAT_LIMIT_USER,
    CONFIG,
    DB,
    HASHER,
    LOGIN_BACKOFF,
    LOGIN_LIMIT_ADDRESS,
    NODES,
    PLACEMENT,
    RECORDER,
    REDIS,
    REGISTER_LIMIT_ADDRESS,
    SFU_KEY,
    STORE,
    TOKENS,
    WEBSOCKET_LEASES,
)
from vtp.auth.authority import AuthorityBus
from vtp.auth.passwords import PasswordHasher
from vtp.auth.ratelimit import Backoff, RateLimiter
from vtp.auth.secret import load_or_create_secret
from vtp.auth.tokens import TokenService
from vtp.channel import socket as channel
from vtp.channel.relay import relay_ctx
from vtp.cluster.nodes import LoadSample, NodeRegistry, cluster_refusal, this_node
from vtp.cluster.placement import Placement
from vtp.config import Config
from vtp.db import users
from vtp.db.migrate import apply_migrations
from vtp.events.deliverer import deliverer_ctx
from vtp.events.stream import emit, events_ctx, events_middleware
from vtp.limits.leases import Leases
from vtp.mail import mailer_ctx
from vtp.private_files import private_dir
from vtp.recorder import Recorder
from vtp.sfu import Sfu, events
from vtp.signalling.cascade import edge_rooms_ctx
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
            if not await users.any_user(conn):
                # a fresh installation's first screen says how to get in
                log.info(
                    "no account yet: sign up in the browser, or create the first admin with"
                    " `vtp user create --email ADDRESS --role admin`"
                )
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


async def sfu_ctx(app: web.Application) -> AsyncIterator[None]:
    """The media plane of this process."""
    sfu = Sfu(app[CONFIG])
    await sfu.start()
    app[SFU_KEY] = sfu
    try:
        yield
    finally:
        await sfu.close()


async def recorder_ctx(app: web.Application) -> AsyncIterator[None]:
    """The recorder, beside the SFU whose rooms it taps (after the database, object store
    and SFU contexts)."""
    recorder = Recorder(app[CONFIG], app[DB], app[STORE], app.get(SFU_KEY))

    def emit_event(
        type: str, course_id: uuid.UUID, session_id: uuid.UUID, data: dict[str, Any]
    ) -> None:
        emit(app, type, course_id=course_id, session_id=session_id, **data)  # type: ignore[arg-type]

    recorder.events = emit_event  # recording.* events (vtp.events), from the media layer
    await recorder.start()
    app[RECORDER] = recorder
    try:
        yield
    finally:
        await recorder.close()


async def cluster_ctx(app: web.Application) -> AsyncIterator[None]:
    """This node in the registry, with the load its SFU measures, and room placement (after
    Redis and the SFU; cleaned up first, so that a stopping node leaves at once)."""
    config = app[CONFIG]
    refusal = cluster_refusal(config, config.workers)
    if refusal is not None:
        raise RuntimeError(refusal)
    sfu = app.get(SFU_KEY)

    def sample() -> LoadSample:
        if sfu is None:
            return LoadSample()
        totals = sfu.totals()
        return LoadSample(
            peers=totals.get("peers", 0),
            rooms=totals.get("rooms", 0),
            forwarded_packets=totals.get("up_forwarded", 0),
        )

    media_port = sfu.mux.port if sfu is not None and sfu.mux is not None else None
    registry = NodeRegistry(
        app[REDIS],
        this_node(config, media_port=media_port),
        heartbeat_s=config.node_heartbeat_s,
        ttl_s=config.node_ttl_s,
        sample=sample,
    )
    placement = Placement(app[REDIS], registry, node_ttl_s=config.node_ttl_s)
    await registry.start()
    app[NODES] = registry
    app[PLACEMENT] = placement
    background: set[asyncio.Task[None]] = set()

    def on_event(event: events.Event) -> None:
        # a room that closes here (ended, or empty past its grace) is no longer placed here
        if isinstance(event, events.RoomClosed):
            task = asyncio.create_task(placement.release(event.room))
            background.add(task)
            task.add_done_callback(background.discard)

    unlisten = sfu.add_listener(on_event) if sfu is not None else None
    try:
        yield
    finally:
        if unlisten is not None:
            unlisten()
        if background:
            await asyncio.wait(list(background), timeout=5)
        try:
            await registry.close()
            await placement.release_all()
        except Exception:  # Redis gone: the entry expires by itself
            log.exception("leaving the node registry failed")


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
    # The OpenAPI document is written from the @endpoint declarations (vtp.api.endpoint).
    undeclared = [
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.method not in ("HEAD", "OPTIONS")
        and endpoint_of(route.handler) is None
    ]
    if undeclared:
        raise RuntimeError(f"API routes without an @endpoint declaration: {', '.join(undeclared)}")


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
    app.cleanup_ctx.append(sfu_ctx)  # the media plane
    channel.setup(app)  # open WebSockets (closed at shutdown)
    signalling.setup(app)  # members of SFU rooms (after the SFU), signalling sockets
    app.cleanup_ctx.append(recorder_ctx)  # after the SFU: recordings tap its rooms
    setup_web(app)  # templates, headers, the classroom live channel's state
    metrics.setup(app)  # the request counting middleware (outermost)
    routes.add_routes(app)  # every endpoint: vtp/routes.py
    https.setup(app)  # HSTS and the HTTP->HTTPS redirect listener, when TLS is on
    app.cleanup_ctx.append(cluster_ctx)  # a stopping node leaves the registry first
    app.cleanup_ctx.append(relay_ctx)  # channels relayed between nodes (in the cluster)
    app.cleanup_ctx.append(edge_rooms_ctx)  # cascades this node serves (ended first)
    _check_access_rules(app)
    return app
