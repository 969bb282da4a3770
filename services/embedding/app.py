"""`create_app()` for the embedding service: the model loads in the background behind /health."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from services.common.app_factory import harden
from services.common.model_loading import load_in_background
from services.embedding.api import router
from services.embedding.engine import EmbeddingEngine
from services.embedding.metrics import EmbeddingMetrics
from services.embedding.settings import EmbeddingSettings
from services.embedding.state import EmbeddingState

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

    return app
