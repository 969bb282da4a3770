"""The RAG service's query-vector cache: a repeated question is not embedded again; a changed one is."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.metrics import metric
from tests.support.procs import free_port
from tests.support.rag import index_corpus, rag_settings, running_rag

QUESTION = "Olympus Mons volcano"


async def search(client: httpx.AsyncClient, query: str) -> httpx.Response:
    return await client.post("/search", json={"query": query, "collection": "docs"})


def cache_counts(text: str) -> tuple[float, float]:
    return metric(text, "rag_query_cache_hits_total"), metric(text, "rag_query_cache_misses_total")


async def test_a_repeated_query_skips_the_embedding_service(rag) -> None:
    client, app = rag
    await index_corpus(client)
    first = await search(client, QUESTION)
    assert cache_counts((await client.get("/metrics")).text) == (0, 1)
    # the embedding service goes away: a cached question still searches, a new one cannot be embedded
    app.state.rag.embedder.url = f"http://127.0.0.1:{free_port()}"
    again = await search(client, QUESTION)
    changed = await search(client, QUESTION + " eruption")
    assert again.status_code == 200, again.text
    assert again.json()["results"] == first.json()["results"]
    assert changed.status_code == 503
    assert cache_counts((await client.get("/metrics")).text) == (1, 1)


async def test_the_query_cache_can_be_switched_off(
    tmp_path: Path, models_dir: Path, database_url: str, embedding_url: str, gateway_url: str, corpus: dict
) -> None:
    settings = rag_settings(tmp_path, models_dir, database_url, embedding_url, gateway_url,
                            RAG_QUERY_CACHE_ENTRIES=0)
    async with running_rag(settings) as (client, _):
        await index_corpus(client)
        await search(client, QUESTION)
        await search(client, QUESTION)
        assert cache_counts((await client.get("/metrics")).text) == (0, 0)
