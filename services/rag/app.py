"""`create_app()` for the RAG service: stores and clients live in the lifespan, in a typed state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.common.app_factory import harden
from services.common.errors import ServiceUnavailable, error_response
from services.common.health import health_response
from services.common.httpclient import make_client
from services.common.lru import LruCache
from services.rag.api import admin, documents, search
from services.rag.clients.embedding import EmbeddingClient
from services.rag.clients.gateway import GatewayClient
from services.rag.clients.outage import RetryPolicy, describe
from services.rag.clients.postgres import PostgresStore
from services.rag.clients.qdrant import VectorStore
from services.rag.collections import Collections
from services.rag.metrics import RagMetrics
from services.rag.settings import RagSettings
from services.rag.state import RagState, rag_state

if TYPE_CHECKING:
    from services.rag.chunking import Chunker
    from services.rag.text import TextAnalyzer

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 2.0


def _text_tools(settings: RagSettings) -> tuple[TextAnalyzer, Chunker]:
    # imported here: kiwipiepy and tokenizers load native libraries, which stays out of import time
    from services.rag.chunking import Chunker
    from services.rag.text import TextAnalyzer

    chunker = Chunker(settings.tokenizer_path(), settings.chunk_tokens, settings.chunk_overlap)
    return TextAnalyzer(), chunker


def _build_state(settings: RagSettings, metrics: RagMetrics) -> RagState:
    policy = RetryPolicy(settings.qdrant_max_retries, settings.qdrant_retry_min_wait, settings.qdrant_retry_max_wait)
    http = make_client(settings.embedding_timeout)
    pg = PostgresStore(settings.postgres_url(), policy, settings.postgres_pool_size, settings.postgres_pool_timeout)
    vectors = VectorStore(policy, url=settings.qdrant_url, path=settings.vectors_path(),
                          api_key=settings.qdrant_api_key, timeout=settings.qdrant_timeout)
    return RagState(
        settings=settings,
        metrics=metrics,
        http=http,
        pg=pg,
        vectors=vectors,
        collections=Collections(pg, vectors, metrics, settings.documents_root() / "uploads"),
        embedder=EmbeddingClient(settings.embedding_url, http, policy, settings.embedding_batch_size),
        gateway=GatewayClient(settings.gateway_url, http, settings.rag_model, settings.rag_llm_timeout,
                              settings.rag_max_answer_tokens),
        query_vectors=LruCache(settings.query_cache_entries),
    )


async def _warm_up(state: RagState) -> None:
    try:
        await state.ensure_ready()
        # the first search of each collection would otherwise wait for its vectors to be read (embedded Qdrant)
        await state.vectors.warm()
    except ServiceUnavailable as exc:
        # not fatal: requests and /health try again, so the service recovers once the dependency is up
        log.warning("not ready yet: %s", exc.message)
    except Exception:
        # the same holds for anything else: the first search of a collection loads its vectors itself
        log.exception("warm-up at start-up failed")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: RagSettings = app.state.settings
    state = _build_state(settings, app.state.metrics)
    app.state.rag = state
    if not settings.tokenizer_path().is_file():
        raise SystemExit(f"embedding tokenizer not found: {settings.tokenizer_path()} "
                         "(run `ai-suite models fetch`, or set EMBEDDING_MODEL_DIR)")
    settings.documents_root().mkdir(parents=True, exist_ok=True)
    await state.pg.open()
    state.analyzer, state.chunker = await asyncio.to_thread(_text_tools, settings)
    warming = asyncio.create_task(_warm_up(state))
    try:
        yield
    finally:
        warming.cancel()
        with suppress(asyncio.CancelledError):
            await warming
        if state.background:
            await asyncio.gather(*state.background, return_exceptions=True)
        await state.vectors.close()
        await state.pg.close()
        await state.http.aclose()


async def _check(name: str, probe: object) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, HEALTH_TIMEOUT)  # type: ignore[arg-type]
    except TimeoutError:
        return name, f"unavailable: no answer within {HEALTH_TIMEOUT:g}s"
    except Exception as exc:  # a health probe reports every failure as a state, whatever its type
        return name, f"unavailable: {describe(exc)}"
    return name, "ok"


async def _postgres_ready(state: RagState) -> None:
    await state.pg.ping(HEALTH_TIMEOUT)
    await state.ensure_ready()


def create_app(settings: RagSettings | None = None) -> FastAPI:
    """Build the service; nothing connects until the lifespan starts."""
    settings = settings or RagSettings()
    app = FastAPI(title="Local AI Suite RAG", lifespan=lifespan)
    registry = harden(app, settings)
    app.state.settings = settings
    app.state.metrics = metrics = RagMetrics.create(registry)
    app.include_router(documents.router)
    app.include_router(search.router)
    app.include_router(admin.router)

    @app.exception_handler(ServiceUnavailable)
    async def _unavailable(_: Request, exc: ServiceUnavailable) -> JSONResponse:
        dependency = exc.code.removesuffix("_unavailable") if exc.code.endswith("_unavailable") else exc.code
        metrics.dependency_errors.labels(dependency).inc()
        return error_response(exc)

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        state = rag_state(request)
        results = await asyncio.gather(
            _check("postgres", _postgres_ready(state)),
            _check("qdrant", state.vectors.ping()),
            _check("embedding", state.embedder.ping()),
            _check("gateway", state.gateway.ping()),
        )
        checks = dict(results)
        checks["text_analyzer"] = "ok" if state.analyzer is not None else "loading"
        info = {"qdrant_mode": state.vectors.mode, "collections_in_bm25": len(state.bm25),
                "bm25_chunks": state.collections.chunk_count()}
        return health_response("rag", checks, info=info)

    return app
