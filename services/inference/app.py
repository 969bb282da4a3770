"""`create_app()` for the inference service: the model loads in the background behind /health."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.common.app_factory import harden
from services.common.health import health_response
from services.common.model_loading import load_in_background
from services.inference.api import router
from services.inference.engine import ModelEngine
from services.inference.metrics import InferenceMetrics
from services.inference.settings import InferenceSettings
from services.inference.state import InferenceState, inference_state

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

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        state = inference_state(request)
        model_state = state.model_state()
        info = {
            "model": settings.model_path().name,
            "aliases": settings.aliases(),
            "n_ctx": state.engine.n_ctx if state.engine else settings.n_ctx,
            "queue_depth": state.queue.waiting if state.queue else 0,
        }
        if model_state == "loading":
            info["status"] = "loading"
        return health_response("inference", {"model": model_state}, info=info)

    return app
