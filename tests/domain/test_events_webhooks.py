"""Events out (issue 17): the event stream in real Redis, and webhooks delivered to a real
HTTP receiver (an aiohttp server in the test) by the app's deliverer."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from domain_helpers import World
from helpers import assert_error
from redis.asyncio import Redis

from tests.support.waiting import eventually
from vtp.appkeys import CONFIG, DB, REDIS
from vtp.config import Config
from vtp.events import signing
from vtp.events.deliverer import DELIVERER, GROUP, Deliverer, version_key
from vtp.events.envelope import EVENT_TYPES, SCHEMA_VERSION
from vtp.events.secret_box import SecretBox, SecretUnreadable
from vtp.events.stream import EVENTS
from vtp.events.targets import GuardedResolver
from vtp.web.participation import PARTICIPATION


@pytest.fixture
def config(config: Config) -> Config:
    """The receiver runs on 127.0.0.1 over http: allowed here (the SSRF test turns the
    guard back on). Retries are quick so outages can be tested."""
    return config.model_copy(
        update={
            "webhook_allow_http": True,
            "webhook_allow_private": True,
            "webhook_retry_first_s": 0.1,
            "webhook_retry_max_s": 0.4,
            "webhook_max_attempts": 40,
            "webhook_timeout_s": 1.0,
            "webhook_claim_idle_s": 1.0,
            "chat_max_messages": 10_000,
        }
    )


def poll(check: Callable[[], Any], within: float = 15.0) -> Awaitable[Any]:
    return eventually(check, within, "the webhook outcome")


@dataclass
class Receiver:
    """A webhook receiver: records every request; `mode` decides the answer."""

    mode: str = "ok"  # ok | fail | hang | fail-first (500 on each event's first attempt)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    runner: web.AppRunner | None = None
    port: int = 0
    hanging: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append((headers, body))
        if self.mode == "hang":
            self.hanging += 1
            await asyncio.Event().wait()
        if self.mode == "fail":
            return web.Response(status=503)
        if self.mode == "fail-first" and headers["webhook-id"] not in self.seen:
            self.seen.add(headers["webhook-id"])
            return web.Response(status=500)
        return web.Response(status=204)

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]

    def delivered_ids(self) -> list[str]:
        return [e["id"] for e in self.events()]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    yield rec
    await rec.stop()


async def register(world: World, url: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = await world.ok(
        world.admin, "POST", "/api/v1/webhooks", {"url": url, **extra}, status=201
    )
    return body


async def stream_events(world: World) -> list[dict[str, Any]]:
    app = world.client.server.app
    await app[PARTICIPATION].wait()  # (summaries of ended sessions)
    await app[EVENTS].flush()
    entries = await app[REDIS].xrange(app[CONFIG].events_stream)
    return [json.loads(fields[b"event"]) for _, fields in entries]


async def run_session(world: World, chats: int = 3, title: str = "Lecture") -> str:
    sid = await world.start_session(title)
    for i in range(chats):
        await world.ok(
            world.student, "POST", f"/api/v1/sessions/{sid}/chat", {"body": f"m{i}"}, status=201
        )
    await world.ok(world.teacher, "POST", f"/api/v1/sessions/{sid}/end")
    return str(sid)


SESSION_FLOW = ["session.scheduled", "session.started", "chat.message", "session.ended"]


def flow_of(events: list[dict[str, Any]], session_id: str) -> list[str]:
    return [e["type"] for e in events if e["session_id"] == session_id]


async def test_events_are_in_the_stream_in_order_with_the_envelope(world: World) -> None:
    sid = await run_session(world, chats=2)
    events = await stream_events(world)
    assert flow_of(events, sid) == [
        "session.scheduled",
        "session.started",
        "chat.message",
        "chat.message",
        "session.ended",
        "session.summary",
    ]
    for event in events:
        assert set(event) == {
            "id",
            "type",
            "version",
            "occurred_at",
            "course_id",
            "session_id",
            "data",
        }
        assert event["version"] == SCHEMA_VERSION and event["type"] in EVENT_TYPES
        assert event["id"].startswith("evt_")
        assert datetime.fromisoformat(event["occurred_at"]).tzinfo is not None
    assert len({e["id"] for e in events}) == len(events)
    ours = [e for e in events if e["session_id"] == sid]
    assert all(e["course_id"] == world.course_id for e in ours)
    chat = next(e for e in ours if e["type"] == "chat.message")
    assert chat["data"]["body"] == "m0" and chat["data"]["author_id"] == world.student.user_id
    summary = ours[-1]["data"]
    student = next(p for p in summary["participants"] if p["user_id"] == world.student.user_id)
    assert student["chat_messages"] == 2 and student["talk_seconds"] == 0
    # enrolments made by the world's setup are in the stream too
    enrolled = [e for e in events if e["type"] == "enrollment.changed"]
    assert {e["data"]["user_id"] for e in enrolled} >= {world.student.user_id}


async def test_no_event_for_what_did_not_happen(world: World) -> None:
    session = await world.schedule("x")
    before = len(await stream_events(world))
    status, _ = await world.call(world.teacher, "POST", f"/api/v1/sessions/{session['id']}/end")
    assert status == 409  # a scheduled session cannot end
    status, _ = await world.call(
        world.student, "POST", f"/api/v1/sessions/{session['id']}/chat", {"body": "hi"}
    )
    assert status == 409  # not live: no chat
    assert len(await stream_events(world)) == before


async def test_the_stream_is_bounded(world: World) -> None:
    app = world.client.server.app
    stream = app[EVENTS]
    stream.max_length = 1000  # (the smallest the setting allows)
    for _ in range(3000):
        stream.emit("chat.message", body="x")
    await stream.flush()
    length = await app[REDIS].xlen(app[CONFIG].events_stream)
    assert 1000 <= length < 1500  # MAXLEN ~ trims whole nodes


async def test_webhooks_are_signed_and_in_order_per_session(
    world: World, receiver: Receiver
) -> None:
    hook = await register(world, receiver.url)
    secret = hook["secret"]
    assert secret.startswith("whsec_") and "secret" not in await world.ok(
        world.admin, "GET", f"/api/v1/webhooks/{hook['id']}"
    )
    sessions = [await run_session(world, chats=3, title=f"S{i}") for i in range(3)]
    expected = [e["id"] for e in await stream_events(world) if e["session_id"] in sessions]
    await poll(lambda: _async(set(expected) <= set(receiver.delivered_ids())))
    for headers, body in receiver.requests:
        assert headers["content-type"] == "application/json"
        assert signing.verify(secret, headers, body, int(time.time()))
        assert headers["webhook-id"] == json.loads(body)["id"]
        tampered = body.replace(b'"data"', b'"date"')
        assert not signing.verify(secret, headers, tampered, int(time.time()))
        assert not signing.verify(signing.new_secret(), headers, body, int(time.time()))
    delivered = receiver.events()
    for sid in sessions:
        assert flow_of(delivered, sid) == [
            "session.scheduled",
            "session.started",
            "chat.message",
            "chat.message",
            "chat.message",
            "session.ended",
            "session.summary",
        ]
    log = await world.ok(world.admin, "GET", f"/api/v1/webhooks/{hook['id']}/deliveries?limit=100")
    assert {d["outcome"] for d in log["items"]} == {"delivered"}
    assert all(d["status_code"] == 204 and d["attempt"] == 1 for d in log["items"])


async def _async(value: Any) -> Any:
    return value


async def test_event_type_filter(world: World, receiver: Receiver) -> None:
    await register(world, receiver.url, event_types=["session.started", "session.ended"])
    sid = await run_session(world, chats=2)
    await poll(lambda: _async(len(receiver.requests) >= 2))
    await asyncio.sleep(0.3)  # (nothing else may arrive)
    assert flow_of(receiver.events(), sid) == ["session.started", "session.ended"]
    status, body = await world.call(
        world.admin, "POST", "/api/v1/webhooks", {"url": receiver.url, "event_types": ["nope"]}
    )
    assert status == 400 and "nope" in json.dumps(assert_error(body, "validation_error"))


async def test_redelivery_after_a_receiver_outage_loses_nothing(
    world: World, receiver: Receiver
) -> None:
    hook = await register(world, receiver.url)
    port = receiver.port
    await receiver.stop()  # the receiver is down: connections are refused
    sessions = [await run_session(world, chats=2, title=f"S{i}") for i in range(2)]
    expected = [e["id"] for e in await stream_events(world) if e["session_id"] in sessions]

    async def failures() -> bool:
        log = await world.ok(
            world.admin, "GET", f"/api/v1/webhooks/{hook['id']}/deliveries?outcome=failed"
        )
        return len(log["items"]) >= 3

    await poll(failures)
    await receiver.start(port)  # back
    await poll(lambda: _async(set(expected) <= set(receiver.delivered_ids())))
    ids = receiver.delivered_ids()
    for sid in sessions:  # order kept through the outage
        assert flow_of(receiver.events(), sid) == [
            "session.scheduled",
            "session.started",
            "chat.message",
            "chat.message",
            "session.ended",
            "session.summary",
        ]
    assert [i for i in ids if i in expected] == expected  # each once, in stream order
    log = await world.ok(
        world.admin, "GET", f"/api/v1/webhooks/{hook['id']}/deliveries?limit=100&outcome=failed"
    )
    first = log["items"][-1]
    assert first["event_id"] == expected[0] and "ClientConnectorError" in first["error"]


async def test_a_retried_event_carries_the_same_id_and_body(
    world: World, receiver: Receiver
) -> None:
    receiver.mode = "fail-first"  # as if the receiver's answer had been lost
    hook = await register(world, receiver.url)
    sid = await run_session(world, chats=1)
    expected = [e["id"] for e in await stream_events(world) if e["session_id"] == sid]
    await poll(lambda: _async(len(receiver.requests) >= 2 * len(expected)))
    by_id: dict[str, list[bytes]] = {}
    for headers, body in receiver.requests:
        by_id.setdefault(headers["webhook-id"], []).append(body)
        assert signing.verify(hook["secret"], headers, body, int(time.time()))
    assert set(expected) <= set(by_id)
    for event_id in expected:
        first, again = by_id[event_id][:2]
        assert first == again
    log = await world.ok(
        world.admin,
        "GET",
        f"/api/v1/webhooks/{hook['id']}/deliveries?event_id={expected[0]}",
    )
    assert [(d["attempt"], d["outcome"]) for d in log["items"]] == [
        (2, "delivered"),
        (1, "failed"),
    ]


async def test_dead_letter_after_the_last_attempt(
    world: World, receiver: Receiver, config: Config
) -> None:
    receiver.mode = "fail"
    world.client.server.app[CONFIG].webhook_max_attempts = 2
    hook = await register(world, receiver.url, event_types=["session.started"])
    await run_session(world, chats=0)

    async def dead() -> Any:
        log = await world.ok(
            world.admin, "GET", f"/api/v1/webhooks/{hook['id']}/deliveries?outcome=dead"
        )
        return log["items"]

    [record] = await poll(dead)
    assert record["attempt"] == 2 and record["status_code"] == 503
    assert record["payload"]["type"] == "session.started"
    assert record["payload"]["id"] == record["event_id"]


async def test_a_hanging_receiver_slows_neither_the_api_nor_other_endpoints(
    world: World, receiver: Receiver
) -> None:
    hanging = Receiver(mode="hang")
    await hanging.start()
    try:
        started = time.monotonic()
        await run_session(world, chats=20)
        baseline_s = time.monotonic() - started
        await register(world, hanging.url)
        await register(world, receiver.url)
        started = time.monotonic()
        sid = await run_session(world, chats=20)
        api_s = time.monotonic() - started
        expected = [e["id"] for e in await stream_events(world) if e["session_id"] == sid]
        await poll(lambda: _async(set(expected) <= set(receiver.delivered_ids())), within=5)
        assert hanging.hanging >= 1  # it holds a request open all along
        # 24 API calls while the other endpoint hangs: none waited for it.
        print(f"API time for a class: {baseline_s:.2f} s alone, {api_s:.2f} s with a hanging hook")
        assert api_s < 2 * baseline_s + 0.5, (api_s, baseline_s)
    finally:
        await hanging.stop()


async def test_webhook_routes_are_for_admins_only(world: World, receiver: Receiver) -> None:
    for actor in (world.teacher, world.student):
        status, body = await world.call(actor, "POST", "/api/v1/webhooks", {"url": receiver.url})
        assert status == 403, body
        status, _ = await world.call(actor, "GET", "/api/v1/webhooks")
        assert status == 403
    hook = await register(world, receiver.url, description="LMS")
    listed = await world.ok(world.admin, "GET", "/api/v1/webhooks")
    assert [h["id"] for h in listed["items"]] == [hook["id"]]
    patched = await world.ok(
        world.admin, "PATCH", f"/api/v1/webhooks/{hook['id']}", {"enabled": False}
    )
    assert patched["enabled"] is False
    rotated = await world.ok(world.admin, "POST", f"/api/v1/webhooks/{hook['id']}/secret")
    assert rotated["secret"] != hook["secret"]
    await world.ok(world.admin, "DELETE", f"/api/v1/webhooks/{hook['id']}", status=204)
    status, body = await world.call(world.admin, "GET", f"/api/v1/webhooks/{hook['id']}")
    assert status == 404


async def test_ssrf_targets_are_refused(world: World, aiohttp_client: Any, config: Config) -> None:
    from vtp.app import create_app

    guarded = config.model_copy(
        update={"webhook_allow_http": False, "webhook_allow_private": False}
    )
    client = await aiohttp_client(create_app(guarded))
    for url, words in [
        ("http://example.org/hook", "https://"),
        ("https://127.0.0.1/hook", "internal"),
        ("https://[::1]/hook", "internal"),
        ("https://10.1.2.3/hook", "internal"),
        ("https://169.254.169.254/latest", "internal"),
        ("https://[::ffff:192.168.0.1]/", "internal"),
        ("https://localhost:8443/hook", "internal"),
        ("https://user:pw@example.org/", "credentials"),
        ("ftp://example.org/", "https://"),
    ]:
        resp = await client.post("/api/v1/webhooks", json={"url": url}, headers=world.admin.headers)
        body = await resp.json()
        assert resp.status == 400, (url, body)
        assert words in assert_error(body, "validation_error")["details"][0]["message"], url
    # A name that resolves to an internal address at delivery time is refused too.
    with pytest.raises(OSError, match="internal address"):
        await GuardedResolver(allow_private=False).resolve("localhost", 443)


async def test_delivery_time_check_refuses_an_internal_target(
    world: World, receiver: Receiver
) -> None:
    """An endpoint that became internal (stored before the operator closed http and
    private targets) is refused when delivering: dead at once, nothing sent."""
    hook = await register(world, receiver.url)
    config = world.client.server.app[CONFIG]
    config.webhook_allow_private = False
    config.webhook_allow_http = False
    await run_session(world, chats=0)

    async def dead() -> Any:
        log = await world.ok(
            world.admin, "GET", f"/api/v1/webhooks/{hook['id']}/deliveries?outcome=dead"
        )
        return log["items"]

    records = await poll(dead)
    assert records[0]["error"].startswith("refused: ") and records[0]["attempt"] == 1
    assert receiver.requests == []


async def test_a_crashed_deliverer_is_taken_over_and_ids_repeat(
    world: World, receiver: Receiver
) -> None:
    """Deliverer A takes entries and dies before acknowledging them (its lease expires,
    nothing released); deliverer B re-claims them with XAUTOCLAIM and delivers them
    with the same ids."""
    app = world.client.server.app
    await app[DELIVERER].close()  # the app's own deliverer steps aside
    config: Config = app[CONFIG]
    pool: asyncpg.Pool = app[DB]
    redis: Redis = app[REDIS]
    receiver.mode = "hang"
    hook = await register(world, receiver.url, event_types=["chat.message"])
    crashed = Deliverer(config, redis, pool, lease_s=1.0)
    crashed.start()
    sid = await run_session(world, chats=3)
    await poll(lambda: _async(receiver.hanging >= 1))
    # crash: the task dies, the lease is not released, nothing is acknowledged
    assert crashed._task is not None
    crashed._stopping = True
    while not crashed._task.done():  # (redis-py can swallow a cancel in a blocking read)
        crashed._task.cancel()
        await asyncio.wait({crashed._task}, timeout=0.5)
    pending = await redis.xpending(config.events_stream, GROUP)
    assert pending["pending"] >= 3  # (the three chat messages, maybe what followed them)
    receiver.mode = "ok"
    first_try = set(receiver.delivered_ids())
    taker = Deliverer(config, redis, pool, lease_s=1.0)
    taker.start()
    try:
        expected = [
            e["id"]
            for e in await stream_events(world)
            if e["session_id"] == sid and e["type"] == "chat.message"
        ]
        await poll(lambda: _async(len(receiver.requests) >= 4))
        ids = receiver.delivered_ids()
        assert set(ids) == set(expected) and first_try <= set(expected)
        assert ids.count(expected[0]) == 2  # the hung one came again, same id

        async def acked() -> bool:
            info = await redis.xpending(config.events_stream, GROUP)
            return bool(info["pending"] == 0)

        await poll(acked)
    finally:
        await taker.close()
        await crashed.close()
    log = await world.ok(world.admin, "GET", f"/api/v1/webhooks/{hook['id']}/deliveries")
    assert {d["event_id"] for d in log["items"] if d["outcome"] == "delivered"} == set(expected)


async def test_signature_matches_the_standard_webhooks_example() -> None:
    """The example of the Standard Webhooks specification (its reference libraries'
    test vector): same secret, id, timestamp and body give the same signature."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert signing.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


async def test_recording_events(world: World) -> None:
    """Started and stopped by staff; with nothing published the upload finds no media:
    recording.failed says why."""
    sid = await world.start_session("Recorded")
    started = await world.ok(
        world.teacher, "POST", f"/api/v1/sessions/{sid}/recording/start", status=201
    )
    await world.ok(world.teacher, "POST", f"/api/v1/sessions/{sid}/recording/stop")

    async def recording_events() -> list[dict[str, Any]]:
        found = [e for e in await stream_events(world) if e["type"].startswith("recording.")]
        return found if len(found) >= 3 else []

    events = await poll(recording_events)
    assert [e["type"] for e in events] == [
        "recording.started",
        "recording.stopped",
        "recording.failed",
    ]
    recording_id = started.get("recording_id") or started.get("id")
    assert {e["data"]["recording_id"] for e in events} == {recording_id}
    assert all(e["session_id"] == sid and e["course_id"] == world.course_id for e in events)
    assert events[0]["data"]["by"] == world.teacher.user_id
    assert events[1]["data"]["reason"] == "stopped"
    assert "nothing was published" in events[2]["data"]["error"]


async def test_two_nodes_share_the_stream_in_order_and_deliver_once(
    world: World, receiver: Receiver, aiohttp_client: Any, config: Config
) -> None:
    """A second process on the same PostgreSQL and Redis: a class driven through both
    (start on one, chat on the other, end on the first) is one ordered story in the
    stream, and each event reaches the endpoint once (one node delivers at a time)."""
    from vtp.app import create_app

    other = await aiohttp_client(create_app(config))
    await register(world, receiver.url)
    sid = await world.start_session("Two nodes")
    for i in range(5):
        node = other if i % 2 == 0 else world.client
        resp = await node.post(
            f"/api/v1/sessions/{sid}/chat", json={"body": f"m{i}"}, headers=world.student.headers
        )
        assert resp.status == 201, await resp.text()
    resp = await other.post(f"/api/v1/sessions/{sid}/end", headers=world.teacher.headers)
    assert resp.status == 200, await resp.text()
    await other.server.app[PARTICIPATION].wait()
    events = [e for e in await stream_events(world) if e["session_id"] == sid]
    assert [e["type"] for e in events] == [
        "session.scheduled",
        "session.started",
        *["chat.message"] * 5,
        "session.ended",
        "session.summary",
    ]
    assert [e["data"]["body"] for e in events if e["type"] == "chat.message"] == [
        f"m{i}" for i in range(5)
    ]
    expected = [e["id"] for e in events]
    await poll(lambda: _async(set(expected) <= set(receiver.delivered_ids())))
    await asyncio.sleep(0.5)  # (a second deliverer would send them again by now)
    delivered = [i for i in receiver.delivered_ids() if i in expected]
    assert delivered == expected


async def test_secrets_are_encrypted_at_rest_and_never_shown_again(
    world: World, receiver: Receiver
) -> None:
    """The database holds no webhook secret in plain text; the API shows it only when it
    is made; deliveries are signed with the plain secret all the same."""
    hook = await register(world, receiver.url, event_types=["chat.message"])
    secret = hook["secret"]
    pool: asyncpg.Pool = world.client.server.app[DB]
    row = await pool.fetchrow("SELECT * FROM webhook_endpoints WHERE id = $1", hook["id"])
    assert row["secret"] is None and row["secret_sealed"].startswith("v1.")
    stored = " ".join(str(v) for v in row.values())
    assert secret not in stored and secret.removeprefix("whsec_") not in stored
    path = f"/api/v1/webhooks/{hook['id']}"
    shown = [
        await world.ok(world.admin, "GET", path),
        await world.ok(world.admin, "GET", "/api/v1/webhooks"),
        await world.ok(world.admin, "PATCH", path, {"description": "LMS"}),
    ]
    assert all("secret" not in json.dumps(body) for body in shown)
    await run_session(world, chats=1)
    await poll(lambda: _async(len(receiver.requests) >= 1))
    headers, body = receiver.requests[0]
    assert signing.verify(secret, headers, body, int(time.time()))


async def test_plain_secrets_of_before_are_sealed_at_start_and_still_sign(
    world: World, receiver: Receiver, aiohttp_client: Any, config: Config
) -> None:
    """An endpoint stored with a plain-text secret (before migration 008): the next app
    start seals it, and deliveries are signed with that same secret."""
    from vtp.app import create_app

    pool: asyncpg.Pool = world.client.server.app[DB]
    legacy = signing.new_secret()
    endpoint_id = await pool.fetchval(
        """INSERT INTO webhook_endpoints (url, secret, event_types)
           VALUES ($1, $2, '{chat.message}') RETURNING id""",
        receiver.url,
        legacy,
    )
    other = await aiohttp_client(create_app(config))  # (an app start: the conversion)
    row = await pool.fetchrow("SELECT * FROM webhook_endpoints WHERE id = $1", endpoint_id)
    assert row["secret"] is None and row["secret_sealed"].startswith("v1.")
    await other.close()
    app = world.client.server.app
    await app[REDIS].incr(version_key(app[CONFIG].events_stream))  # (deliverers reload)
    await run_session(world, chats=1)
    await poll(lambda: _async(len(receiver.requests) >= 1))
    headers, body = receiver.requests[0]
    assert signing.verify(legacy, headers, body, int(time.time()))


def test_a_sealed_secret_opens_only_with_its_key() -> None:
    box = SecretBox("k" * 32)
    sealed = box.seal("whsec_c2VjcmV0")
    assert sealed != box.seal("whsec_c2VjcmV0")  # (a nonce each)
    assert box.open(sealed) == "whsec_c2VjcmV0"
    with pytest.raises(SecretUnreadable):
        SecretBox("j" * 32).open(sealed)
    with pytest.raises(SecretUnreadable):
        box.open(sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB"))
