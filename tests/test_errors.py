"""Every failure answers with the JSON error envelope and the right status."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import jwt
from helpers import JWT_TEST_SECRET, Accounts, assert_error, bearer


async def test_malformed_json_is_400(client: Any) -> None:
    resp = await client.post(
        "/api/v1/auth/login",
        data=b'{"email": "a@b.c", "password": ',
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 400
    assert_error(await resp.json(), "invalid_json")


async def test_json_that_is_not_an_object_is_400(client: Any) -> None:
    resp = await client.post("/api/v1/auth/login", json=["a", "b"])
    assert resp.status == 400
    assert_error(await resp.json(), "invalid_json")


async def test_empty_body_is_400(client: Any) -> None:
    resp = await client.post(
        "/api/v1/auth/login", data=b"", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert_error(await resp.json(), "empty_body")


async def test_unknown_fields_are_named(client: Any) -> None:
    resp = await client.post(
        "/api/v1/auth/register",
        json={
            "email": "x@example.org",
            "password": "a good long password",
            "display_name": "X",
            "role": "admin",
        },
    )
    assert resp.status == 400
    error = assert_error(await resp.json(), "validation_error")
    assert error["details"] == [{"field": "role", "message": "unknown field"}]


async def test_missing_fields_are_named(client: Any) -> None:
    resp = await client.post("/api/v1/auth/register", json={"email": "x@example.org"})
    assert resp.status == 400
    error = assert_error(await resp.json(), "validation_error")
    fields = sorted(d["field"] for d in error["details"])  # type: ignore[union-attr]
    assert fields == ["display_name", "password"]


async def test_oversized_body_is_413_and_writes_nothing(
    client: Any, config: Any, database_url: str
) -> None:
    import asyncpg

    big = "x" * (config.max_body_bytes + 10)
    resp = await client.post(
        "/api/v1/auth/register",
        json={"email": "big@example.org", "password": "a good long password", "display_name": big},
    )
    assert resp.status == 413
    assert_error(await resp.json(), "payload_too_large")
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM users") == 0
    finally:
        await conn.close()


async def test_wrong_content_type_is_415(client: Any) -> None:
    resp = await client.post(
        "/api/v1/auth/login",
        data="email=a&password=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 415
    assert_error(await resp.json(), "unsupported_media_type")


async def test_unknown_route_and_wrong_method(client: Any, accounts: Accounts) -> None:
    resp = await client.get("/api/v1/nothing-here")
    assert resp.status == 404
    assert_error(await resp.json(), "not_found")
    resp = await client.get("/api/v1/auth/login")
    assert resp.status == 405
    assert "POST" in resp.headers["Allow"]
    assert_error(await resp.json(), "method_not_allowed")


async def test_request_id_is_echoed_or_made(client: Any) -> None:
    resp = await client.get("/health", headers={"X-Request-ID": "trace-123"})
    assert resp.headers["X-Request-ID"] == "trace-123"
    resp = await client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert resp.headers["X-Request-ID"] != "bad id with spaces"
    assert len(resp.headers["X-Request-ID"]) == 32


async def test_request_id_is_on_every_log_line(
    client: Any, accounts: Accounts, caplog: Any
) -> None:
    import logging

    from vtp.logs import JsonFormatter, _RequestIdFilter

    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(_RequestIdFilter())
    await client.post(
        "/api/v1/auth/register",
        json={
            "email": "log@example.org",
            "password": "a good long password",
            "display_name": "Log",
        },
        headers={"X-Request-ID": "req-42"},
    )
    lines = [r for r in caplog.records if r.name.startswith("vtp")]
    assert {r.name for r in lines} >= {"vtp.api.auth", "vtp.http"}
    assert all(getattr(r, "request_id", None) == "req-42" for r in lines)
    import json

    entry = json.loads(JsonFormatter().format(lines[0]))
    assert entry["request_id"] == "req-42"


async def test_health_and_ready(client: Any) -> None:
    resp = await client.get("/health")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"
    resp = await client.get("/ready")
    assert resp.status == 200
    body = await resp.json()
    assert set(body["components"]) == {"postgres", "redis", "object_store", "recorder"}
    for component in body["components"].values():
        assert component["status"] == "ok"
        assert component["latency_ms"] >= 0


async def test_ready_is_503_when_redis_is_down(aiohttp_client: Any, config: Any) -> None:
    import socket

    from vtp.app import create_app

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    broken = config.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
    client = await aiohttp_client(create_app(broken))
    resp = await client.get("/ready")
    assert resp.status == 503
    body = await resp.json()
    assert body["components"]["redis"]["status"] == "down"
    assert body["components"]["postgres"]["status"] == "ok"
    # Liveness is not readiness.
    assert (await client.get("/health")).status == 200
    # Requests that need Redis say so: 503, Retry-After, the dependency named.
    login = await client.post(
        "/api/v1/auth/login", json={"email": "r@example.org", "password": "whatever it is"}
    )
    token = jwt.encode(
        {
            "iss": "vtp",
            "sub": str(uuid.uuid4()),
            "role": "student",
            "typ": "access",
            "jti": "j",
            "fam": "f",
            "iat": time.time(),
            "exp": int(time.time()) + 60,
        },
        JWT_TEST_SECRET,
        algorithm="HS256",
    )
    me = await client.get("/api/v1/users/me", headers=bearer(token))
    for resp in (login, me):
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        error = assert_error(await resp.json(), "dependency_unavailable")
        assert error["details"] == {"dependency": "redis", "retry_after_s": 5}
        assert "Redis" in str(error["message"])


async def test_internal_errors_are_json_500_without_details(
    aiohttp_client: Any, config: Any
) -> None:
    from aiohttp import web

    from vtp.api.access import public
    from vtp.app import create_app

    app = create_app(config)

    @public
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    app.router.add_get("/api/v1/boom", boom)
    client = await aiohttp_client(app)
    resp = await client.get("/api/v1/boom")
    assert resp.status == 500
    text = await resp.text()
    assert "secret internals" not in text
    error = assert_error(await resp.json(), "internal_error")
    assert error["details"]["request_id"] == resp.headers["X-Request-ID"]  # type: ignore[index]


def test_api_route_without_access_rule_refuses_to_start(config: Any) -> None:
    import pytest
    from aiohttp import web

    from vtp.app import _check_access_rules, create_app

    app = create_app(config)

    async def naked(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/api/v1/naked", naked)
    with pytest.raises(RuntimeError, match="/api/v1/naked"):
        _check_access_rules(app)


async def test_bearer_on_public_route_is_ignored(client: Any) -> None:
    resp = await client.post(
        "/api/v1/auth/login",
        json={"email": "n@example.org", "password": "whatever it is"},
        headers=bearer("garbage"),
    )
    assert resp.status == 401
    assert_error(await resp.json(), "invalid_credentials")


async def test_deeply_nested_json_is_400_before_authentication(client: Any) -> None:
    for path in ("/api/v1/auth/login", "/api/v1/auth/register"):
        for deep in ("[" * 100_000, '{"a":' * 5_000 + "1" + "}" * 5_000):
            resp = await client.post(
                path, data=deep.encode(), headers={"Content-Type": "application/json"}
            )
            assert resp.status == 400, (path, await resp.text())
            error = assert_error(await resp.json(), "invalid_json")
            assert "deeper than" in str(error["message"])
    # Brackets inside strings do not count; ordinary nesting is fine.
    resp = await client.post(
        "/api/v1/auth/login", json={"email": "[" * 200 + "@x.org", "password": "{" * 150}
    )
    assert resp.status == 401
    assert_error(await resp.json(), "invalid_credentials")


async def test_deeply_nested_signalling_message_is_an_error_message(client: Any) -> None:
    ws = await client.ws_connect("/api/v1/sfu/ws")
    try:
        await ws.send_str("[" * 100_000)
        reply = await ws.receive_json(timeout=10)
        assert reply["type"] == "error", reply
        assert reply["error"]["code"] == "invalid_json"
        assert "deeper than" in reply["error"]["message"]
    finally:
        await ws.close()


async def test_nul_characters_in_text_are_400(client: Any, accounts: Accounts) -> None:
    resp = await client.post(
        "/api/v1/auth/register",
        json={
            "email": "nul@example.org",
            "password": "a good long password",
            "display_name": "A\x00B",
        },
    )
    assert resp.status == 400
    error = assert_error(await resp.json(), "validation_error")
    assert error["details"] == [
        {"field": "display_name", "message": "Value error, may not contain NUL characters"}
    ]
    resp = await client.post(
        "/api/v1/auth/login", json={"email": "nul\x00@example.org", "password": "whatever it is"}
    )
    assert resp.status == 400
    error = assert_error(await resp.json(), "validation_error")
    assert [d["field"] for d in error["details"]] == ["email"]  # type: ignore[union-attr]
    teacher = await accounts.with_role("teacher")
    resp = await client.get("/api/v1/courses?q=a%00b", headers=bearer(teacher["access_token"]))
    assert resp.status == 400
    assert_error(await resp.json(), "validation_error")


class TcpProxy:
    """A TCP relay standing between the app and PostgreSQL, so a test can cut the
    database off (refused connections, dropped sessions) and bring it back."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._pipes):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.transport.abort()
                self._pipes.discard(dst)

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


async def test_requests_are_503_while_postgres_is_down_and_recover(
    aiohttp_client: Any, config: Any, database_url: str
) -> None:
    from urllib.parse import urlsplit, urlunsplit

    from vtp.app import create_app

    parts = urlsplit(database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    via_proxy = urlunsplit(
        parts._replace(netloc=f"{parts.netloc.rpartition('@')[0]}@127.0.0.1:{proxy.port}")
    )
    client = await aiohttp_client(create_app(config.model_copy(update={"database_url": via_proxy})))
    accounts = Accounts(client, database_url)
    account = await accounts.register()
    login = await accounts.login(account["user"]["email"], account["password"])

    await proxy.stop()  # the database goes away: pooled sessions drop, new ones are refused
    for _ in range(2):  # the first request meets a dropped session, the next a refusal
        resp = await client.get("/api/v1/users/me", headers=bearer(login["access_token"]))
        assert resp.status == 503, await resp.text()
        assert resp.headers["Retry-After"] == "5"
        error = assert_error(await resp.json(), "dependency_unavailable")
        assert error["details"] == {"dependency": "postgres", "retry_after_s": 5}
    resp = await client.post(
        "/api/v1/auth/login", json={"email": account["user"]["email"], "password": "x" * 12}
    )
    assert resp.status == 503

    await proxy.start()  # back on the same port: the pool reconnects by itself
    resp = await client.get("/api/v1/users/me", headers=bearer(login["access_token"]))
    assert resp.status == 200, await resp.text()
    await proxy.stop()


def test_only_an_unreachable_service_counts_as_a_failed_dependency() -> None:
    import asyncpg
    import redis.exceptions

    from vtp.api.dependencies import failed_dependency

    assert failed_dependency(redis.exceptions.TimeoutError("slow")) == "redis"
    assert failed_dependency(asyncpg.exceptions.AdminShutdownError("bye")) == "postgres"
    assert failed_dependency(asyncpg.InterfaceError("connection is closed")) == "postgres"
    try:
        try:
            raise redis.exceptions.ConnectionError("refused")
        except redis.exceptions.ConnectionError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert failed_dependency(outer) == "redis"
    # Bugs stay 500s: a bad query argument, a statement timeout, an OSError of our own.
    assert failed_dependency(asyncpg.exceptions.DataError("bad argument")) is None
    assert failed_dependency(asyncpg.exceptions.QueryCanceledError("timeout")) is None
    try:
        raise ConnectionRefusedError("not from a database client")
    except OSError as exc:
        assert failed_dependency(exc) is None


def test_json_depth_bound_is_exact() -> None:
    import pytest

    from vtp.jsonlimits import MAX_DEPTH, TooDeep, loads

    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    assert loads('{"a": ' * MAX_DEPTH + '"[[[[{{{{"' + "}" * MAX_DEPTH)
    for deep in ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "[" * 100_000):
        with pytest.raises(TooDeep):
            loads(deep)
