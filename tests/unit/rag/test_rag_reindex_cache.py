"""Re-indexing an unchanged corpus through RAG reaches the embedding service but runs no embedding model."""

from __future__ import annotations

from pathlib import Path

from services.embedding.engine import EmbeddingEngine
from services.embedding.settings import EmbeddingSettings
from tests.support.embedding import CountingEngine
from tests.support.rag import embedding_server, index_corpus, rag_settings, running_rag


async def test_reindexing_a_dropped_collection_embeds_nothing(
    tmp_path: Path, models_dir: Path, database_url: str, gateway_url: str, corpus: dict
) -> None:
    engine = EmbeddingEngine.load(EmbeddingSettings(_env_file=None, MODELS_DIR=models_dir))  # type: ignore[call-arg]
    counting = CountingEngine(engine)
    with embedding_server(models_dir, lambda _: counting) as url:
        async with running_rag(rag_settings(tmp_path, models_dir, database_url, url, gateway_url)) as (client, _):
            first = await index_corpus(client)
            embedded = counting.texts
            dropped = await client.delete("/collections/docs")
            again = await index_corpus(client)
    assert dropped.status_code < 300, dropped.text
    assert first["chunks_added"] > 0 and embedded >= first["chunks_added"]
    assert again["chunks_added"] == first["chunks_added"]  # every chunk was stored anew...
    assert counting.texts == embedded  # ...with vectors that came from the embedding cache
