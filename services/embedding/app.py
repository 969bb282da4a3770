"""`create_app()` for the embedding service: the model loads in the background behind /health."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from services.common.app_factory import harden
from services.common.model_loading import load_in_background
from services.embedding.api import router
from services.embedding.cache import DiskCache, EmbeddingCache
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
        state.cache = await anyio.to_thread.run_sync(open_cache, settings)
        try:
            async with load_in_background(settings.model_path(), lambda: loader(settings), state.loaded,
                                          state.failed):
                yield
        finally:
            if state.cache is not None:
                state.cache.close()

    return lifespan


def open_cache(settings: EmbeddingSettings) -> EmbeddingCache | None:
    """The vector cache the settings ask for; a disk tier that cannot open is logged and left off."""
    if not settings.cache or (settings.cache_entries == 0 and settings.cache_disk_mb == 0):
        return None
    disk = None
    if settings.cache_disk_mb > 0:
        disk = DiskCache(settings.vector_cache_path(), settings.cache_disk_mb * 1024 * 1024)
        disk.open()
    return EmbeddingCache(settings.embedding_model, settings.cache_entries, disk)


def create_app(settings: EmbeddingSettings | None = None, *, loader: Loader = EmbeddingEngine.load) -> FastAPI:
    """Build the service; `loader` turns settings into a loaded engine (tests may gate it)."""
    settings = settings or EmbeddingSettings()
    app = FastAPI(title="Local AI Suite embedding", lifespan=_lifespan(loader))
    registry = harden(app, settings)
    app.state.embedding = EmbeddingState(settings=settings, metrics=EmbeddingMetrics.create(registry))
    app.include_router(router)

    return app
