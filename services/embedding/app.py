"""`create_app()` for the embedding service: the model loads in the background behind /health."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.common.app_factory import harden
from services.common.health import health_response
from services.common.model_loading import load_in_background
from services.embedding.api import router
from services.embedding.engine import EmbeddingEngine
from services.embedding.metrics import EmbeddingMetrics
from services.embedding.settings import EmbeddingSettings
from services.embedding.state import EmbeddingState, embedding_state

Loader = Callable[[EmbeddingSettings], EmbeddingEngine]


def _lifespan(loader: Loader) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state: EmbeddingState = app.state.embedding
        settings = state.settings
        async with load_in_background(settings.model_path(), lambda: loader(settings), state.loaded, state.failed):
            yield

    return lifespan


def create_app(settings: EmbeddingSettings | None = None, *, loader: Loader = EmbeddingEngine.load) -> FastAPI:
    """Build the service; `loader` turns settings into a loaded engine (tests may gate it)."""
    settings = settings or EmbeddingSettings()
    app = FastAPI(title="Local AI Suite embedding", lifespan=_lifespan(loader))
    registry = harden(app, settings)
    app.state.embedding = EmbeddingState(settings=settings, metrics=EmbeddingMetrics.create(registry))
    app.include_router(router)

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        state = embedding_state(request)
        model_state = state.model_state()
        info = {
            "model": settings.embedding_model,
            "dim": state.engine.dim if state.engine else None,
            "threads": settings.thread_count(),
            "batch_size": settings.batch_size,
            "queue_depth": state.pending,
        }
        if model_state == "loading":
            info["status"] = "loading"
        return health_response("embedding", {"model": model_state}, info=info)

    return app
