"""Run a service's app with uvicorn after the exposure check."""

from __future__ import annotations

from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from services.common.logging import configure_logging
from services.common.settings import SuiteSettings


def serve(app_factory: Callable[[SuiteSettings], FastAPI], settings: SuiteSettings, port: int) -> None:
    """Start uvicorn on `settings.host:port`; refuses a non-loopback bind without a key."""
    configure_logging(settings.log_level, settings.log_json, settings.log_file)
    settings.check_exposure()
    uvicorn.run(
        app_factory(settings),
        host=settings.host,
        port=port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
    )
