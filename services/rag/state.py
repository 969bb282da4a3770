"""The service's typed state: settings, clients, text tools and the in-memory BM25 indexes."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import Request

from services.common.errors import ServiceUnavailable
from services.rag.bm25 import BM25Index
from services.rag.clients.embedding import EmbeddingClient
from services.rag.clients.gateway import GatewayClient
from services.rag.clients.postgres import PostgresStore
from services.rag.clients.qdrant import VectorStore
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
    analyzer: TextAnalyzer | None = None
    chunker: Chunker | None = None
    bm25: dict[str, BM25Index] = field(default_factory=lambda: defaultdict(BM25Index))
    # one writer at a time: indexing and deletes of the same document must not interleave
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    _ready: bool = False
    _ready_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def ensure_ready(self) -> None:
        """Apply migrations and load BM25 from postgres once; retried on every request until it works."""
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            await self.pg.migrate()
            rows = await self.pg.all_terms()
            indexes: dict[str, BM25Index] = defaultdict(BM25Index)
            for collection, chunk_id, terms in rows:
                indexes[collection].add(str(chunk_id), terms)
            self.bm25 = indexes
            self._ready = True
            log.info("BM25 loaded: %d chunks in %d collections", len(rows), len(indexes))

    def spawn(self, job: Coroutine[Any, Any, None]) -> None:
        """Run `job` after the response; the set keeps the task alive until it ends."""
        task = asyncio.get_running_loop().create_task(job)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    @property
    def ready(self) -> bool:
        return self._ready

    def text_tools(self) -> tuple[TextAnalyzer, Chunker]:
        if self.analyzer is None or self.chunker is None:
            raise ServiceUnavailable("the text analyzer is still loading", retry_after=2, code="analyzer_loading")
        return self.analyzer, self.chunker


def rag_state(request: Request) -> RagState:
    state: RagState = request.app.state.rag
    return state
