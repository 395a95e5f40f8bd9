"""Watching requests: request ids, the access log, request metrics, /health and /metrics.

``observe_middleware`` runs first on every listener: it gives the request its
id (the ``request_id`` context variable and ``X-Request-Id`` header), times
it, counts it under its route *pattern* and writes one access-log line. The
line holds the method, the route pattern (or, for an unmatched request, the
path without its query string, so an ``access_token`` parameter never
appears), the status, the duration and the request id; never bodies or
headers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware

from homeserver.http.shell import Handler
from homeserver.logs import new_request_id, request_id

if TYPE_CHECKING:
    from homeserver.metrics import Metrics

access_log = logging.getLogger("myelin.access")

UNMATCHED = "unmatched"
# The status logged and counted for a request whose client went away first (nginx's).
CLIENT_CLOSED = 499


def route_pattern(request: web.Request) -> str | None:
    """The matched route's pattern (``/rooms/{roomId}/...``), None when nothing matched."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    if resource is None:
        return None
    return resource.canonical


def _is_sync(route: str) -> bool:
    return route.endswith("/sync")


def observe_middleware(metrics: Metrics | None, listener: str) -> Middleware:
    """The outermost middleware of ``listener`` (``client``, ``federation``, ``metrics``).
    ``metrics`` is None while the metrics listener is off: requests are logged, not counted."""

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = new_request_id()
        request_id.set(rid)
        pattern = route_pattern(request)
        route = pattern or UNMATCHED
        sync = pattern is not None and _is_sync(pattern)
        started = time.monotonic()
        status = 500
        if metrics is not None:
            metrics.http_in_flight.labels(listener).inc()
            if sync:
                metrics.sync_in_flight.inc()
        try:
            resp = await handler(request)
            status = resp.status
            if not resp.prepared:
                resp.headers["X-Request-Id"] = rid
            return resp
        except web.HTTPException as e:
            status = e.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            elapsed = time.monotonic() - started
            if metrics is not None:
                metrics.http_in_flight.labels(listener).dec()
                if sync:
                    metrics.sync_in_flight.dec()
                metrics.http_requests.labels(
                    listener, request.method, route, f"{status // 100}xx"
                ).inc()
                metrics.http_latency.labels(listener, request.method, route).observe(elapsed)
            shown = pattern or request.path
            access_log.info(
                "%s %s %d %.3fs",
                request.method,
                shown,
                status,
                elapsed,
                extra={
                    "access": {
                        "method": request.method,
                        "route": shown,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 1),
                        "listener": listener,
                    }
                },
            )

    return observe


async def health(_: web.Request) -> web.Response:
    """``GET /health``: 200 ``OK`` while the process serves (Synapse's shape)."""
    return web.Response(text="OK", content_type="text/plain")


def health_routes() -> list[web.RouteDef]:
    return [web.get("/health", health)]


METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_app(metrics: Metrics) -> web.Application:
    """The separate metrics listener: ``/metrics`` (Prometheus text) and ``/health``."""

    async def scrape(_: web.Request) -> web.Response:
        body = await metrics.render()
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = METRICS_CONTENT_TYPE
        return resp

    app = web.Application(middlewares=[observe_middleware(metrics, "metrics")])
    app.add_routes([web.get("/metrics", scrape), *health_routes()])
    return app
