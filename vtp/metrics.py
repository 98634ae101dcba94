"""Prometheus metrics at ``/metrics``: HTTP traffic, the SFU, recordings, the database.

Request counts and latencies are recorded by a middleware; everything else is read from
the running services when Prometheus scrapes (the SFU's packet path keeps its own plain
counters and pays nothing for metrics). One registry per application, no global state.

Access: ``Authorization: Bearer <VTP_METRICS_TOKEN>`` (for Prometheus'
``authorization`` setting), or an admin's access token.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from vtp.api.errors import forbidden, unauthorized
from vtp.api.middleware import bearer_token
from vtp.appkeys import CONFIG, DB, RECORDER, SFU_KEY, TOKENS
from vtp.auth.tokens import TokenError
from vtp.channel.relay import RELAY

routes = web.RouteTableDef()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# SFU totals exposed as counters: name in Sfu.totals() -> (metric, help)
SFU_COUNTERS = {
    "up_packets": ("vtp_sfu_received_packets", "RTP packets received from publishers"),
    "up_bytes": ("vtp_sfu_received_bytes", "RTP payload bytes received from publishers"),
    "up_forwarded": ("vtp_sfu_forwarded_packets", "RTP packets written to subscribers"),
    "up_dropped": ("vtp_sfu_dropped_packets", "publisher packets not forwarded (invalid)"),
    "up_nacks_sent": ("vtp_sfu_nacks_sent", "sequence numbers the SFU asked publishers for"),
    "up_plis_sent": ("vtp_sfu_plis_sent", "keyframe requests sent to publishers"),
    "up_keyframes": ("vtp_sfu_keyframes", "keyframes received from publishers"),
    "unrouted": ("vtp_sfu_unrouted_packets", "publisher packets that matched no track"),
    "down_packets": ("vtp_sfu_sent_packets", "RTP packets sent to subscribers"),
    "down_octets": ("vtp_sfu_sent_bytes", "RTP payload bytes sent to subscribers"),
    "down_retransmitted": ("vtp_sfu_retransmitted_packets", "packets resent to subscribers"),
    "down_nacks_received": ("vtp_sfu_nacks_received", "sequence numbers subscribers lost"),
    "down_plis_received": ("vtp_sfu_plis_received", "keyframe requests from subscribers"),
    "send_errors": ("vtp_sfu_send_errors", "datagrams the kernel refused to send"),
    "twcc_feedback": ("vtp_sfu_twcc_feedback", "transport-cc feedback packets sent"),
    "ice_lite_dropped": ("vtp_sfu_ice_lite_dropped", "datagrams the one-port mux dropped"),
}
SFU_GAUGES = {
    "rooms": ("vtp_sfu_rooms", "open rooms"),
    "peers": ("vtp_sfu_peers", "peers in rooms"),
    "publications": ("vtp_sfu_publications", "publications (up connections)"),
    "subscriptions": ("vtp_sfu_subscriptions", "subscriptions (down connections)"),
}


class _ServiceCollector(Collector):
    """Reads the SFU, the recorder and the database pool at scrape time."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def _events(self) -> Iterator[Metric]:
        from vtp.events.deliverer import DELIVERER
        from vtp.events.stream import EVENTS

        stream = self.app.get(EVENTS)
        if stream is not None:
            yield CounterMetricFamily(
                "vtp_events_appended", "events appended to the event stream", value=stream.appended
            )
            yield CounterMetricFamily(
                "vtp_events_dropped",
                "live events dropped: the queue to the outbox overflowed",
                value=stream.dropped,
            )
        deliverer = self.app.get(DELIVERER)
        if deliverer is not None:
            family = CounterMetricFamily(
                "vtp_webhook_attempts", "webhook delivery attempts", labels=["outcome"]
            )
            family.add_metric(["delivered"], deliverer.delivered)
            family.add_metric(["failed"], deliverer.failed)
            family.add_metric(["dead"], deliverer.dead)
            yield family

    def collect(self) -> Iterator[Metric]:
        sfu = self.app.get(SFU_KEY)
        if sfu is not None:
            totals = sfu.totals()
            for key, (name, text) in SFU_COUNTERS.items():
                yield CounterMetricFamily(name, text, value=totals.get(key, 0))
            for key, (name, text) in SFU_GAUGES.items():
                yield GaugeMetricFamily(name, text, value=totals.get(key, 0))
        recorder = self.app.get(RECORDER)
        if recorder is not None:
            yield GaugeMetricFamily(
                "vtp_recordings_active", "recordings in progress", value=len(recorder.active)
            )
            yield GaugeMetricFamily(
                "vtp_recordings_pending_upload",
                "finished recordings waiting for (or retrying) their upload",
                value=len(recorder.uploader.pending),
            )
        yield from self._events()
        relay = self.app.get(RELAY)
        if relay is not None:
            family = GaugeMetricFamily(
                "vtp_relayed_sockets",
                "WebSockets (signalling, classroom live channel) relayed between nodes: held"
                " here for a room on another"
                " node (door), or served here for a socket another node holds (room)",
                labels=["side"],
            )
            family.add_metric(["door"], len(relay.doors))
            family.add_metric(["room"], len(relay.hosted))
            yield family
        pool = self.app.get(DB)
        if pool is not None:
            family = GaugeMetricFamily(
                "vtp_db_pool_connections", "database pool connections", labels=["state"]
            )
            idle = pool.get_idle_size()
            family.add_metric(["idle"], idle)
            family.add_metric(["busy"], pool.get_size() - idle)
            yield family


class Metrics:
    def __init__(self, app: web.Application) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vtp_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vtp_http_request_duration_seconds",
            "time to answer an HTTP request (WebSocket sessions are not timed)",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.registry.register(_ServiceCollector(app))


METRICS = web.AppKey("metrics", Metrics)


def _route(request: web.Request) -> str:
    # the route's pattern, never the raw path: labels must stay few
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = _route(request)
        metrics.requests.labels(request.method, route, str(status)).inc()
        if status != 101:
            metrics.latency.labels(request.method, route).observe(time.perf_counter() - start)


@routes.get("/metrics")
async def metrics_view(request: web.Request) -> web.Response:
    """The Prometheus text exposition (see the module docstring for access)."""
    token = bearer_token(request)
    if token is None:
        raise unauthorized("not_authenticated", "missing bearer token")
    secret = request.app[CONFIG].metrics_token
    if secret is None or not hmac.compare_digest(
        token.encode(), secret.get_secret_value().encode()
    ):
        try:
            principal = await request.app[TOKENS].verify_access(token)
        except TokenError as exc:
            raise unauthorized(exc.code, exc.message) from exc
        if principal.role != "admin":
            raise forbidden("metrics are for admins and the metrics token")
    body = generate_latest(request.app[METRICS].registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def setup(app: web.Application) -> None:
    """The registry and the request-counting middleware; the route is in vtp.routes."""
    app[METRICS] = Metrics(app)
    app.middlewares.insert(0, metrics_middleware)


__all__ = ["METRICS", "Metrics", "metrics_middleware", "routes", "setup"]
