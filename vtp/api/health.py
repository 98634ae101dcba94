"""GET /health (the process is alive) and GET /ready (its dependencies answer)."""

from __future__ import annotations

from aiohttp import web

from vtp import __version__
from vtp.appkeys import CONFIG, DB, NODES, RECORDER, REDIS, STORE
from vtp.health import check_all

routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    # the node that answered: behind a load balancer (or --workers' shared port), which
    # one this was
    registry = request.app.get(NODES)
    node = registry.id if registry is not None else None
    return web.json_response({"status": "ok", "version": __version__, "node": node})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    components = await check_all(
        request.app[DB],
        request.app[REDIS],
        request.app[STORE],
        embedded_db=config.embedded_database,
        embedded_redis=config.embedded_redis,
    )
    recorder = request.app.get(RECORDER)
    if recorder is not None:
        components.append(recorder.health())
    ok = all(c.ok for c in components)
    body = {
        "status": "ready" if ok else "unavailable",
        "components": {c.name: c.to_json() for c in components},
    }
    return web.json_response(body, status=200 if ok else 503)
