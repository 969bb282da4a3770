"""Dense Qdrant search plus BM25, fused by reciprocal rank, with chunk text from postgres."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import numpy as np

from services.common.errors import NotFound
from services.rag.fusion import reciprocal_rank_fusion
from services.rag.state import RagState

# Each half returns this many candidates per wanted result, so fusion has room to reorder.
CANDIDATES_PER_RESULT = 4
MIN_CANDIDATES = 20
# A few spare ids cover vectors whose postgres rows are gone (an interrupted delete).
SPARE = 3


@dataclass(frozen=True)
class Hit:
    chunk_id: UUID
    document_id: str
    document: str
    chunk: int
    score: float
    text: str
    token_count: int

    def source(self) -> dict[str, Any]:
        return {"document": self.document, "document_id": self.document_id, "chunk": self.chunk,
                "score": round(self.score, 6), "text": self.text}


@dataclass
class Timings:
    embed_ms: float = 0.0
    vector_ms: float = 0.0
    bm25_ms: float = 0.0
    fusion_ms: float = 0.0
    postgres_ms: float = 0.0
    total_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {key: round(value, 3) for key, value in vars(self).items()}


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


async def query_vector(state: RagState, query: str) -> list[float]:
    """The query's embedding, from the in-memory cache when the same text was asked before."""
    cache = state.query_vectors
    cached = cache.get(query)
    if cached is not None:
        state.metrics.query_cache_hits.inc()
        return cached.tolist()
    embedded = await state.embedder.embed([query])
    if cache.enabled:
        state.metrics.query_cache_misses.inc()
        if embedded.model != state.query_model:  # another embedding model answers now: older vectors are stale
            cache.clear()
            state.query_model = embedded.model
        vector = np.asarray(embedded.vectors[0], dtype=np.float32)
        vector.setflags(write=False)
        cache.put(query, vector)
    return embedded.vectors[0]


async def retrieve(state: RagState, collection: str, query: str, top_k: int, hybrid: bool,
                   endpoint: str = "search") -> tuple[list[Hit], Timings]:
    """The `top_k` best chunks for `query`; 404 when the collection does not exist."""
    started = time.perf_counter()
    timings = Timings()
    t = time.perf_counter()
    vector = await query_vector(state, query)
    timings.embed_ms = _ms(t)
    candidates = max(top_k * CANDIDATES_PER_RESULT, MIN_CANDIDATES)
    t = time.perf_counter()
    dense = await state.vectors.search(collection, vector, candidates)
    timings.vector_ms = _ms(t)
    scores = {chunk_id: score for chunk_id, score in dense}
    ranked: list[tuple[UUID, float]] = dense
    sparse: list[tuple[str, float]] = []
    if hybrid:
        t = time.perf_counter()
        index = state.bm25.get(collection)
        sparse = index.search(state.text_tools()[0].bm25_terms(query), candidates) if index is not None else []
        timings.bm25_ms = _ms(t)
        t = time.perf_counter()
        fused = reciprocal_rank_fusion([[str(chunk_id) for chunk_id, _ in dense], [cid for cid, _ in sparse]])
        ranked = [(UUID(cid), score) for cid, score in fused]
        timings.fusion_ms = _ms(t)
    wanted = ranked[:top_k + SPARE]
    t = time.perf_counter()
    rows = await state.pg.fetch_chunks([chunk_id for chunk_id, _ in wanted])
    # A chunk row belongs to a document, and a document to its collection, so only an empty answer needs
    # the existence check: one postgres query less per search.
    if not rows and not await state.pg.collection_exists(collection):
        raise NotFound(f"collection {collection!r} does not exist", code="collection_not_found",
                       param="collection")
    timings.postgres_ms = _ms(t)
    hits = [
        Hit(chunk_id, row["document_id"], row["path"], row["chunk_index"], score if hybrid else scores[chunk_id],
            row["text"], row["token_count"])
        for chunk_id, score in wanted
        if (row := rows.get(chunk_id)) is not None
    ][:top_k]
    timings.total_ms = _ms(started)
    best = max((score for _, score in dense), default=None)
    _observe(state, timings, hybrid, best)
    # hits always come back while the collection has chunks, so "empty" means none of them matched at all
    matched = bool(hits) and (bool(sparse) or (best is not None and best >= state.settings.rag_empty_score))
    state.metrics.retrieved(endpoint, matched)
    return hits, timings


def _observe(state: RagState, timings: Timings, hybrid: bool, best: float | None) -> None:
    stages = {"embed": timings.embed_ms, "dense": timings.vector_ms, "postgres": timings.postgres_ms,
              "total": timings.total_ms}
    if hybrid:  # a dense-only search has no BM25 or fusion stage; zeros would drag their percentiles down
        stages |= {"bm25": timings.bm25_ms, "fusion": timings.fusion_ms}
    for stage, ms in stages.items():
        state.metrics.retrieval_seconds.labels(stage).observe(ms / 1000)
    if best is not None:
        state.metrics.top_score.observe(best)
