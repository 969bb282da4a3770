"""A service's model loads in a worker thread while the app already answers /health (503 until it is ready)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from fastapi.responses import JSONResponse

from services.common.errors import ServiceUnavailable
from services.common.health import health_response
from services.common.models import require_model

log = logging.getLogger(__name__)

EngineT = TypeVar("EngineT")


@asynccontextmanager
async def load_in_background(
    path: Path | None, load: Callable[[], EngineT], loaded: Callable[[EngineT], None], failed: Callable[[str], None]
) -> AsyncIterator[None]:
    """Refuse the start when the model file is missing, then load it beside the running app.

    `loaded` receives the engine, `failed` the reason a load failed (the service keeps answering 503 with it).
    """
    if path is not None:
        # A missing file fails the start at once, with the fetch command in the message.
        require_model(path)
    task = asyncio.create_task(_load(path, load, loaded, failed))
    try:
        yield
    finally:
        # A load in progress cannot be interrupted; wait for it, so the model is closed and its threads end.
        await task


async def _load(path: Path | None, load: Callable[[], EngineT], loaded: Callable[[EngineT], None],
                failed: Callable[[str], None]) -> None:
    try:
        engine = await asyncio.to_thread(load)
    except Exception as exc:  # model libraries report a bad file with assorted exception types
        log.exception("could not load the model %s", path or "")
        failed(str(exc) or type(exc).__name__)
        return
    loaded(engine)


def model_state(ready: bool, load_error: str | None) -> str:
    """The model's entry in /health: ok, loading, or failed with the reason."""
    if load_error:
        return f"failed: {load_error}"
    return "ok" if ready else "loading"


def not_ready(what: str, load_error: str | None) -> ServiceUnavailable:
    """The 503 a request gets before the model is ready: still loading, or failed to load."""
    if load_error:
        return ServiceUnavailable(f"{what} failed to load: {load_error}", retry_after=30, code="model_load_failed")
    return ServiceUnavailable(f"{what} is still loading", retry_after=2, code="model_loading")


def model_health(service: str, state: str, info: dict[str, Any]) -> JSONResponse:
    """/health of a model service: 200 once the model is ready, 503 while it loads ("status": "loading")."""
    if state == "loading":
        info = {**info, "status": "loading"}
    return health_response(service, {"model": state}, info=info)
