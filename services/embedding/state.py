"""The service's typed state: settings, metrics, the model once loaded, and the one-batch-at-a-time gate."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import anyio
import anyio.to_thread
import numpy as np
from fastapi import Request

from services.common.errors import ServiceUnavailable
from services.common.model_loading import model_state, not_ready
from services.embedding.cache import Cached, EmbeddingCache
from services.embedding.engine import Embedded, EmbeddingEngine
from services.embedding.metrics import EmbeddingMetrics
from services.embedding.settings import EmbeddingSettings


@dataclass
class EmbeddingState:
    settings: EmbeddingSettings
    metrics: EmbeddingMetrics
    engine: EmbeddingEngine | None = None
    cache: EmbeddingCache | None = None
    load_error: str | None = None
    pending: int = 0
    # ONNX Runtime already spreads one batch over every thread; a second batch at once would only fight it.
    gate: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(1))

    def model_state(self) -> str:
        return model_state(self.engine is not None, self.load_error)

    def loaded(self, engine: EmbeddingEngine) -> None:
        self.engine = engine

    def failed(self, reason: str) -> None:
        self.load_error = reason

    def ready(self) -> EmbeddingEngine:
        """The loaded engine; 503 while it loads or after it failed to load."""
        if self.engine is None:
            raise not_ready("the embedding model", self.load_error)
        return self.engine

    async def embed(self, texts: list[str], count_tokens: bool = False) -> Embedded:
        """The vectors of `texts`: cached ones by hash, the rest from one model call behind the gate."""
        engine = self.ready()
        cache = self.cache
        if cache is None:
            return await self._run_model(engine, texts, count_tokens)
        keys, (found, from_disk) = await anyio.to_thread.run_sync(self._lookup, cache, texts)
        missing = {key: text for key, text in zip(keys, texts, strict=True) if key not in found}
        self.metrics.cache_lookups(len(texts), len(missing), from_disk)
        batches: tuple[int, ...] = ()
        model_tokens = 0
        if missing:
            fresh = await self._run_model(engine, list(missing.values()), True)
            batches, model_tokens = fresh.batches, fresh.token_total
            # copies: a row view would keep the whole batch array alive in the cache
            new = {key: Cached(_frozen(row), tokens) for key, row, tokens
                   in zip(missing, fresh.vectors, fresh.per_text_tokens, strict=True)}
            await anyio.to_thread.run_sync(cache.store, new)
            found = found | new
        vectors = np.stack([found[key].vector for key in keys]) if keys else np.empty((0, engine.dim), np.float32)
        tokens = sum(found[key].tokens for key in keys)
        return Embedded(vectors, tokens if count_tokens else None, batches, model_tokens)

    @staticmethod
    def _lookup(cache: EmbeddingCache, texts: list[str]) -> tuple[list[bytes], tuple[dict[bytes, Cached], int]]:
        keys = cache.keys(texts)
        return keys, cache.lookup(keys)

    async def _run_model(self, engine: EmbeddingEngine, texts: list[str], count_tokens: bool) -> Embedded:
        """Run one batch call in a worker thread, behind the gate; 503 when too many already wait."""
        if self.pending > self.settings.max_queue:
            self.metrics.rejected.inc()
            raise ServiceUnavailable(
                f"the embedding service is busy ({self.pending} requests ahead)", retry_after=1, code="queue_full"
            )
        self.pending += 1
        self.metrics.queue_depth.set(self.pending)
        try:
            async with self.gate:
                started = time.perf_counter()
                result = await anyio.to_thread.run_sync(engine.embed, texts, count_tokens)
                self.metrics.batch_seconds.observe(time.perf_counter() - started)
        finally:
            self.pending -= 1
            self.metrics.queue_depth.set(self.pending)
        self.metrics.embedded(len(texts), result.token_total, result.batches)
        return result


def _frozen(row: np.ndarray) -> np.ndarray:
    copy = row.copy()
    copy.setflags(write=False)
    return copy


def embedding_state(request: Request) -> EmbeddingState:
    state: EmbeddingState = request.app.state.embedding
    return state
