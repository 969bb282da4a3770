"""`create_app()` for the alert receiver: POST /webhook from Alertmanager, GET /alerts for people and the app."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.alerts.settings import AlertsSettings
from services.alerts.store import AlertStore
from services.common.app_factory import harden
from services.common.errors import BadRequest
from services.common.health import health_response

log = logging.getLogger(__name__)


class DataDirSpace(Collector):
    """DATA_DIR's file system, measured at each scrape (DataDiskAlmostFull reads it)."""

    def __init__(self, folder: Path, shown: str) -> None:
        self.folder = folder
        self.shown = shown

    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            stats = os.statvfs(self.folder)
        except OSError:
            return  # the folder is gone; no sample rather than a made-up one
        size = GaugeMetricFamily("ai_suite_data_dir_size_bytes", "Size of the file system holding DATA_DIR.",
                                 labels=["path"])
        size.add_metric([self.shown], stats.f_blocks * stats.f_frsize)
        available = GaugeMetricFamily("ai_suite_data_dir_available_bytes",
                                      "Bytes of DATA_DIR's file system that the suite can still write.",
                                      labels=["path"])
        available.add_metric([self.shown], stats.f_bavail * stats.f_frsize)
        yield size
        yield available


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    store: AlertStore = app.state.store
    store.path.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(store.load)
    yield


def create_app(settings: AlertsSettings | None = None) -> FastAPI:
    """Build the receiver; the store is read in the lifespan."""
    settings = settings or AlertsSettings()
    app = FastAPI(title="Local AI Suite alerts", lifespan=lifespan)
    registry: CollectorRegistry = harden(app, settings)
    registry.register(DataDirSpace(settings.alerts_dir(), str(settings.data_dir)))
    notifications = Counter("alerts_notifications", "Alertmanager notifications received, by status.",
                            ["status"], registry=registry)
    store = AlertStore(settings.alerts_dir() / "alerts.json", settings.resolved_hours * 3600)
    app.state.store = store
    lock = asyncio.Lock()

    @app.get("/health")
    async def health() -> JSONResponse:
        writable = os.access(settings.alerts_dir(), os.W_OK)
        return health_response("alerts", {"store": "ok" if writable else f"cannot write {settings.alerts_dir()}"},
                               info={"active": len(store.active())})

    @app.post("/webhook")
    async def webhook(request: Request) -> dict[str, Any]:
        """Alertmanager's webhook (version 4 payload): remember each alert and log the ones that changed."""
        payload = await request.json()
        if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
            raise BadRequest("expected an Alertmanager webhook payload with an `alerts` list")
        notifications.labels(str(payload.get("status", "unknown"))).inc()
        async with lock:
            changed = await asyncio.to_thread(store.apply, payload)
        for alert in changed:
            level = logging.WARNING if alert.status == "firing" else logging.INFO
            log.log(level, "alert %s: %s %s", alert.status, alert.name,
                    alert.annotations.get("summary", ""), extra={"alert": alert.labels})
        return {"received": len(payload["alerts"]), "changed": len(changed)}

    @app.get("/alerts")
    async def alerts() -> dict[str, Any]:
        """Firing alerts, and those resolved within ALERTS_KEEP_RESOLVED_HOURS."""
        return {"active": [a.public() for a in store.active()],
                "resolved": [a.public() for a in store.resolved()]}

    return app
