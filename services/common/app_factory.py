"""The pieces every FastAPI service gets: error handlers, body limit, API key, metrics, request ids."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.common.auth import ApiKeyMiddleware
from services.common.body_limit import BodyLimitMiddleware
from services.common.errors import install_error_handlers
from services.common.metrics import instrument
from services.common.request_id import RequestIdMiddleware
from services.common.settings import SuiteSettings


def harden(app: FastAPI, settings: SuiteSettings) -> CollectorRegistry:
    """Install the shared middleware and handlers; returns the app's metrics registry."""
    install_error_handlers(app)
    registry = instrument(app, enabled=settings.metrics_enabled)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # added last, so it is outermost: a refused key or body still gets an id and an access line
    app.add_middleware(RequestIdMiddleware)
    return registry
