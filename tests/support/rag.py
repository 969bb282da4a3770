"""The RAG service in process for tests: real embedding service over HTTP, real postgres, embedded Qdrant."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from services.rag.app import create_app
from services.rag.settings import RagSettings
from tests.support.fake_openai import ThreadedServer
from tests.support.procs import wait_healthy

# Small waits keep dependency-loss tests fast; the retry logic is the same as with the defaults.
FAST_RETRIES = {"QDRANT_MAX_RETRIES": 2, "QDRANT_RETRY_MIN_WAIT": 0.05, "QDRANT_RETRY_MAX_WAIT": 0.2,
                "POSTGRES_POOL_TIMEOUT": 1.0}

_embedding: dict[Path, ThreadedServer] = {}


def shared_embedding(models_dir: Path) -> str:
    """The real embedding service (bundled MiniLM) on a free port, one per test process; returns its URL."""
    server = _embedding.get(models_dir)
    if server is None:
        from services.embedding.app import create_app as create_embedding
        from services.embedding.settings import EmbeddingSettings

        settings = EmbeddingSettings(  # type: ignore[call-arg]
            _env_file=None, MODELS_DIR=models_dir, EMBEDDING_CACHE_DISK_MB=0)  # no cache file in the checkout
        server = ThreadedServer(lambda: create_embedding(settings), lifespan="on").start(deadline_s=60)
        _embedding[models_dir] = server
    url = f"http://127.0.0.1:{server.port}"
    wait_healthy(f"{url}/health", 120)
    return url


@contextmanager
def embedding_server(models_dir: Path, loader: Callable[[Any], Any], *, ready: bool = True) -> Iterator[str]:
    """The real embedding app on a uvicorn port with the given engine loader; yields its base URL.

    With `ready`, it waits for /health first; a test that gates the loader to see the loading state passes False.
    """
    from services.embedding.app import create_app as create_embedding
    from services.embedding.settings import EmbeddingSettings

    settings = EmbeddingSettings(  # type: ignore[call-arg]
        _env_file=None, MODELS_DIR=models_dir, EMBEDDING_CACHE_DISK_MB=0)  # no cache file in the checkout
    server = ThreadedServer(lambda: create_embedding(settings, loader=loader), lifespan="on").start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        if ready:
            wait_healthy(f"{url}/health", 60)
        yield url
    finally:
        server.stop()


def rag_settings(tmp: Path, models_dir: Path, database_url: str, embedding_url: str, gateway_url: str,
                 **env: Any) -> RagSettings:
    values: dict[str, Any] = {
        "MODELS_DIR": models_dir, "DATA_DIR": tmp / "data", "DOCUMENTS_DIR": tmp / "documents",
        "QDRANT_PATH": tmp / "vectors", "DATABASE_URL": database_url, "EMBEDDING_URL": embedding_url,
        "GATEWAY_URL": gateway_url, "RAG_LLM_TIMEOUT": 30, **FAST_RETRIES,
    }
    values.update(env)
    return RagSettings(_env_file=None, **values)  # type: ignore[call-arg]


@asynccontextmanager
async def running_rag(settings: RagSettings) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """The app with its lifespan, and a client that talks to it in process."""
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rag", timeout=120) as client:
            await wait_ready(client)
            yield client, app


async def wait_ready(client: httpx.AsyncClient) -> None:
    """One /health call: it applies the migrations and loads BM25 when postgres is up (and says so if not)."""
    await client.get("/health")


async def index_corpus(client: httpx.AsyncClient, collection: str = "docs", **body: Any) -> dict:
    """Index all of DOCUMENTS_DIR into `collection`; the report must say 200."""
    response = await client.post("/index", json={"collection": collection, **body})
    assert response.status_code == 200, response.text
    return response.json()


def sql_rows(database_url: str, query: str, *params: object) -> list[tuple]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()
