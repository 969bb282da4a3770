"""Routes that read: /search (retrieval only), /query (answer with sources) and /prewarm."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from services.common.errors import BadRequest, PayloadTooLarge, SuiteError
from services.rag.answer import complete_within_window, context_hits, stream_answer
from services.rag.api.deps import Ready
from services.rag.api.schemas import PrewarmRequest, QueryRequest, QueryResponse, SearchRequest, SearchResponse
from services.rag.retrieval import Hit, Timings, retrieve
from services.rag.state import RagState

log = logging.getLogger(__name__)
router = APIRouter(tags=["search"])

QUERY_EVENTS: dict[int | str, dict[str, Any]] = {
    "200": {"content": {"text/event-stream": {"schema": {"type": "string"},
                                              "example": 'event: sources\ndata: {"sources": []}\n\n'}}}
}


def _check_query(state: RagState, query: str) -> str:
    limit = state.settings.rag_max_query_chars
    if len(query) > limit:
        raise PayloadTooLarge(f"the query has {len(query)} characters; the limit is {limit}", code="query_too_long",
                              param="query")
    if not query.strip():
        raise BadRequest("the query is empty", code="empty_query", param="query")
    if "\x00" in query:  # PostgreSQL text cannot hold it, and no question needs it
        raise BadRequest("the query contains a NUL character", code="invalid_query", param="query")
    return query.strip()


async def _log(state: RagState, kind: str, body: SearchRequest, hybrid: bool, hits: list[Hit], started: float
               ) -> None:
    latency = (time.perf_counter() - started) * 1000
    try:
        await state.pg.log_search(kind, body.collection, body.query, body.top_k or state.settings.rag_top_k,
                                  hybrid, [hit.chunk_id for hit in hits], latency)
    except SuiteError as exc:
        # the answer was given; a lost log row must not turn it into an error
        log.warning("search log not written: %s", exc.message)


async def _retrieve(state: RagState, body: SearchRequest, endpoint: str) -> tuple[str, bool, list[Hit], Timings]:
    query = _check_query(state, body.query)
    hybrid = state.settings.rag_hybrid if body.hybrid is None else body.hybrid
    hits, timings = await retrieve(state, body.collection, query, body.top_k or state.settings.rag_top_k, hybrid,
                                   endpoint)
    return query, hybrid, hits, timings


@router.post("/search", response_model=SearchResponse)
async def search(body: SearchRequest, state: Ready) -> dict[str, Any]:
    """Retrieval only: the best chunks with per-stage timings (embed, vector, bm25, fusion, postgres)."""
    started = time.perf_counter()
    _, hybrid, hits, timings = await _retrieve(state, body, "search")
    # logged after the timings were taken, in the background, so it does not count as retrieval time
    state.spawn(_log(state, "search", body, hybrid, hits, started))
    return {"collection": body.collection, "hybrid": hybrid, "results": [hit.source() for hit in hits],
            "timings": timings.as_dict()}


@router.post("/query", response_model=QueryResponse, responses=QUERY_EVENTS)
async def query(body: QueryRequest, state: Ready) -> Any:
    """Answer from the collection, citing sources as [n]; `stream` answers with server-sent events."""
    started = time.perf_counter()
    question, hybrid, hits, timings = await _retrieve(state, body, "query")
    packed = context_hits(state, hits)
    if body.stream:
        async def done(_: str) -> None:
            await _log(state, "query", body, hybrid, packed, started)

        return StreamingResponse(stream_answer(state, question, packed, done), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    t = time.perf_counter()
    answer, packed = await complete_within_window(state, question, packed)
    state.metrics.answer_seconds.observe(time.perf_counter() - t)
    await _log(state, "query", body, hybrid, packed, started)
    return {"answer": answer, "sources": [hit.source() for hit in packed], "collection": body.collection,
            "model": state.settings.rag_model,
            "timings": {**timings.as_dict(), "llm_ms": round((time.perf_counter() - t) * 1000, 3)}}


@router.post("/prewarm")
async def prewarm(state: Ready, body: PrewarmRequest | None = None) -> dict[str, Any]:
    """Load what the first question would otherwise wait for: embedding model, Qdrant, optionally the LLM."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    await state.embedder.embed(["prewarm"])
    timings["embed_ms"] = round((time.perf_counter() - t) * 1000, 3)
    t = time.perf_counter()
    await state.vectors.warm()
    timings["qdrant_ms"] = round((time.perf_counter() - t) * 1000, 3)
    if body is not None and body.llm:
        t = time.perf_counter()
        await state.gateway.complete([{"role": "user", "content": "Say OK."}], max_tokens=1)
        timings["llm_ms"] = round((time.perf_counter() - t) * 1000, 3)
    return {"status": "warm", "bm25_chunks": state.collections.chunk_count(), "timings": timings}
