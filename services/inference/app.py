"""`create_app()` for the inference service: the model loads in the background behind /health."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from services.common.app_factory import harden
from services.common.model_loading import load_in_background
from services.inference.api import router
from services.inference.engine import ModelEngine
from services.inference.metrics import InferenceMetrics
from services.inference.settings import InferenceSettings
from services.inference.state import InferenceState

Loader = Callable[[InferenceSettings], ModelEngine]


def _lifespan(loader: Loader) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state: InferenceState = app.state.inference
        settings = state.settings
        async with load_in_background(settings.model_path(), lambda: loader(settings), state.loaded, state.failed):
            try:
                yield
            finally:
                if state.queue is not None:
                    await state.queue.close()
        if state.engine is not None:
            state.engine.close()

    return lifespan


def create_app(settings: InferenceSettings | None = None, *, loader: Loader = ModelEngine.load) -> FastAPI:
    """Build the service; `loader` turns settings into a loaded engine (tests may gate it)."""
    settings = settings or InferenceSettings()
    app = FastAPI(title="Local AI Suite inference", lifespan=_lifespan(loader))
    registry = harden(app, settings)
    app.state.inference = InferenceState(settings=settings, metrics=InferenceMetrics.create(registry))
    app.include_router(router)

    return app
