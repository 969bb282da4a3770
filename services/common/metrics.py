"""`/metrics` for every service, on a registry of the app's own, and the request metrics behind it.

The request metrics keep prometheus-fastapi-instrumentator's names and labels, but come from a small ASGI
middleware of our own: the instrumentator matched every request against the routes a second time and kept
four more series per request, which cost 165 µs a request on the test machine (docs/bench/monitoring.md).
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# http_request_duration_seconds{handler, method}: up to a minute, so HighLatency and `ai-suite status` can tell
# a 2 s answer from a 60 s one.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Probes and scrapes are not requests of the service's users.
EXCLUDED_PREFIXES = ("/metrics", "/health")
UNMATCHED = "none"  # a path no route matched (404), so a scanner cannot grow the label set


class RequestMetrics:
    """Counts every request by handler template, method and status, and times it to its last byte."""

    def __init__(self, app: ASGIApp, requests: Counter, duration: Histogram) -> None:
        self.app = app
        self.requests = requests
        self.duration = duration

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # the router leaves the route it matched in the scope; its path is the template ("/items/{id}")
            handler = getattr(scope.get("route"), "path", None) or UNMATCHED
            if not handler.startswith(EXCLUDED_PREFIXES):
                method = scope.get("method", "")
                self.requests.labels(method, str(status), handler).inc()
                self.duration.labels(handler, method).observe(time.perf_counter() - started)


def instrument(app: FastAPI, registry: CollectorRegistry | None = None, *, enabled: bool = True) -> CollectorRegistry:
    """Add request metrics and expose `/metrics`; returns the registry for domain metrics.

    With `enabled` false (METRICS_ENABLED=false) there is neither the request middleware nor `/metrics`; the
    domain metrics still count into the returned registry, which nothing reads. It exists to measure the cost.
    """
    registry = registry or CollectorRegistry()
    if not enabled:
        return registry
    requests = Counter("http_requests", "Requests by method, status and handler.", ["method", "status", "handler"],
                       registry=registry)
    duration = Histogram("http_request_duration_seconds", "Time to the last byte of the answer, by handler.",
                         ["handler", "method"], buckets=LATENCY_BUCKETS, registry=registry)
    # memory and CPU of each service process: natively there is no cAdvisor to measure them
    ProcessCollector(registry=registry)
    app.add_middleware(RequestMetrics, requests=requests, duration=duration)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return registry
