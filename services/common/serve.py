"""Run a service's app with uvicorn after the exposure check."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from services.common.errors import StartupRefused
from services.common.logging import configure_logging
from services.common.settings import SuiteSettings

SettingsT = TypeVar("SettingsT", bound=SuiteSettings)

# Seconds an idle keep-alive connection stays open. uvicorn's own 5 s equals both httpx's idle expiry and the
# Retry-After the suite's services send most, so a client that comes back on time met a connection closing
# under it (a reset, not an answer). Longer than any Retry-After the suite sends (30 s at most).
KEEP_ALIVE_S = 65


def serve(app_factory: Callable[[SettingsT], FastAPI], settings: SettingsT, port: int) -> None:
    """Start uvicorn on `settings.host:port`; refuses a non-loopback bind without a key."""
    configure_logging(settings.log_level, settings.log_json, settings.log_file,
                      max_bytes=settings.log_max_bytes, backups=settings.log_backups)
    settings.check_exposure()
    logging.getLogger("uvicorn.error").addFilter(RefusalAsOneLine())
    uvicorn.run(
        app_factory(settings),
        host=settings.host,
        port=port,
        log_level=settings.log_level.lower(),
        # uvicorn's own lines go through our handlers too, as JSON with the rest (no log config of its own)
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=KEEP_ALIVE_S,
    )


class RefusalAsOneLine(logging.Filter):
    """uvicorn logs a failed start-up as the lifespan's traceback; a StartupRefused shows only its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text.startswith("Traceback"):
            last = text.rstrip().rsplit("\n", 1)[-1]
            name, _, message = last.partition(": ")
            if message and _is_refusal(name):
                record.msg, record.args, record.exc_info = message, None, None
        return True


def _is_refusal(qualified_name: str) -> bool:
    """True when `module.Class` names a StartupRefused subclass."""
    pending: list[type] = [StartupRefused]
    while pending:
        cls = pending.pop()
        if f"{cls.__module__}.{cls.__qualname__}" == qualified_name:
            return True
        pending.extend(cls.__subclasses__())
    return False
