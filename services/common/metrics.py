"""`/metrics` for every service, on a registry of the app's own."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator


def instrument(app: FastAPI, registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """Add request metrics and expose `/metrics`; returns the registry for domain metrics."""
    registry = registry or CollectorRegistry()
    Instrumentator(
        registry=registry,
        excluded_handlers=["/metrics", "/health"],
        should_group_status_codes=False,
    ).instrument(app).expose(app, include_in_schema=False)
    return registry
