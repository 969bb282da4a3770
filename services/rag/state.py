"""The service's typed state: settings, clients, text tools, and the collections that own every write."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
from fastapi import Request

from services.common.errors import ServiceUnavailable
from services.common.lru import LruCache
from services.rag.bm25 import BM25Index
from services.rag.clients.embedding import EmbeddingClient
from services.rag.clients.gateway import GatewayClient
from services.rag.clients.postgres import PostgresStore
from services.rag.clients.qdrant import VectorStore
from services.rag.collections import Collections
from services.rag.metrics import RagMetrics
from services.rag.settings import RagSettings

if TYPE_CHECKING:
    from services.rag.chunking import Chunker
    from services.rag.text import TextAnalyzer

log = logging.getLogger(__name__)


@dataclass
class RagState:
    settings: RagSettings
    metrics: RagMetrics
    http: httpx.AsyncClient
    pg: PostgresStore
    vectors: VectorStore
    embedder: EmbeddingClient
    gateway: GatewayClient
    collections: Collections
    analyzer: TextAnalyzer | None = None
    chunker: Chunker | None = None
    background: set[asyncio.Task[None]] = field(default_factory=set)
    query_vectors: LruCache[str, np.ndarray] = field(default_factory=lambda: LruCache(0))
    query_model: str | None = None  # the embedding model the cached query vectors came from

    async def ensure_ready(self) -> None:
        """Migrations applied and BM25 loaded; retried on every request until postgres answers."""
        await self.collections.load()

    @property
    def bm25(self) -> dict[str, BM25Index]:
        """The collections' BM25 indexes, for readers; `collections` does every write."""
        return self.collections.bm25

    def spawn(self, job: Coroutine[Any, Any, None]) -> None:
        """Run `job` after the response; the set keeps the task alive until it ends."""
        task = asyncio.get_running_loop().create_task(job)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    @property
    def ready(self) -> bool:
        return self.collections.loaded

    def text_tools(self) -> tuple[TextAnalyzer, Chunker]:
        if self.analyzer is None or self.chunker is None:
            raise ServiceUnavailable("the text analyzer is still loading", retry_after=2, code="analyzer_loading")
        return self.analyzer, self.chunker


def rag_state(request: Request) -> RagState:
    state: RagState = request.app.state.rag
    return state
