"""The RAG service in process: real postgres, embedded Qdrant, the real embedding service over HTTP."""

from __future__ import annotations

from services.rag.clients.qdrant import qdrant_name
from services.rag.state import RagState
from tests.support.rag import index_corpus, rag_settings, running_rag, sql_rows


async def test_index_then_every_question_finds_its_document_first(rag, corpus) -> None:
    client, _ = rag
    report = await index_corpus(client)
    assert {d["path"] for d in report["documents"]} == set(corpus["documents"])
    assert report["skipped"] == []
    assert report["chunks_added"] >= len(corpus["documents"])
    for item in corpus["questions"]:
        response = await client.post("/search", json={"query": item["question"], "collection": "docs", "top_k": 3})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert results[0]["document"] == item["expected_document"], (item["question"], results[:2])
        assert item["passage"] in results[0]["text"]


async def test_korean_inflection_matches_through_bm25(rag, corpus) -> None:
    client, app = rag
    await index_corpus(client)
    inflected = [q for q in corpus["questions"] if q["inflection"]]
    assert inflected, "the corpus must hold a question that uses another inflection"
    state: RagState = app.state.rag
    analyzer = state.text_tools()[0]
    for item in inflected:
        document_form, question_form = item["inflection"]
        passages = corpus["documents"][item["expected_document"]]
        assert any(document_form in passage for passage in passages) and question_form in item["question"]
        assert document_form not in item["question"]
        shared = set(analyzer.bm25_terms(document_form)) & set(analyzer.bm25_terms(question_form))
        assert shared, (document_form, question_form)
    item = inflected[0]
    response = await client.post("/search", json={"query": item["question"], "collection": "docs"})
    assert response.json()["results"][0]["document"] == item["expected_document"]


async def test_search_reports_stage_timings_and_dense_only_mode(rag) -> None:
    client, _ = rag
    await index_corpus(client)
    hybrid = (await client.post("/search", json={"query": "Olympus Mons volcano", "collection": "docs"})).json()
    dense = (await client.post("/search", json={"query": "Olympus Mons volcano", "collection": "docs",
                                                "hybrid": False})).json()
    assert hybrid["hybrid"] is True and dense["hybrid"] is False
    for body in (hybrid, dense):
        assert set(body["timings"]) == {"embed_ms", "vector_ms", "bm25_ms", "fusion_ms", "postgres_ms", "total_ms"}
        assert body["timings"]["total_ms"] > 0
        assert body["results"][0]["document"] == "solar_system.pdf"
    assert dense["timings"]["bm25_ms"] == 0
    # dense scores are cosine similarities; fused scores are reciprocal-rank sums (at most 2/61)
    assert dense["results"][0]["score"] > 0.3
    assert hybrid["results"][0]["score"] <= 2 / 61 + 1e-5


async def test_query_answers_with_numbered_sources_and_logs_it(rag, gateway, database_url) -> None:
    client, _ = rag
    await index_corpus(client)
    gateway.behaviour.seen.clear()
    question = "How long should coffee steep in a French press?"
    response = await client.post("/query", json={"query": question, "collection": "docs", "top_k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] == "gateway:chat-7b"
    assert body["sources"][0]["document"] == "coffee.txt"
    assert {"document", "chunk", "score", "text"} <= set(body["sources"][0])
    sent = gateway.behaviour.seen[-1]
    assert sent["model"] == "chat-7b"
    prompt = sent["messages"][-1]["content"]
    assert "[1] (coffee.txt)" in prompt and question in prompt
    assert "[n]" in sent["messages"][0]["content"]
    logged = sql_rows(database_url, "SELECT kind, collection, query, cardinality(chunk_ids) FROM search_logs")
    assert ("query", "docs", question, len(body["sources"])) in logged


async def test_query_streams_sources_deltas_and_done(rag) -> None:
    client, _ = rag
    await index_corpus(client)
    events = []
    async with client.stream("POST", "/query", json={"query": "What are Saturn's rings made of?",
                                                     "collection": "docs", "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                events.append(line[7:])
    assert events[0] == "sources" and events[-1] == "done"
    assert events.count("delta") == 3


async def test_context_is_packed_within_the_token_budget(tmp_path, models_dir, database_url, embedding_url,
                                                         gateway_url, corpus) -> None:
    settings = rag_settings(tmp_path, models_dir, database_url, embedding_url, gateway_url,
                            RAG_CONTEXT_TOKENS=120, CHUNK_TOKENS=64, CHUNK_OVERLAP=16)
    async with running_rag(settings) as (client, app):
        await index_corpus(client)
        body = (await client.post("/query", json={"query": "coffee beans storage", "collection": "docs",
                                                  "top_k": 10})).json()
        state: RagState = app.state.rag
        chunker = state.text_tools()[1]
        used = sum(chunker.count_tokens(source["text"]) for source in body["sources"])
        assert 0 < used <= 120
        assert len(body["sources"]) < 10


async def test_collections_and_documents_are_listed(rag, corpus) -> None:
    client, _ = rag
    report = await index_corpus(client)
    listed = (await client.get("/collections")).json()["collections"]
    assert [c["name"] for c in listed] == ["docs"]
    assert listed[0]["documents"] == len(corpus["documents"])
    assert listed[0]["chunks"] == report["chunks_added"]
    assert listed[0]["dim"] == 384
    documents = (await client.get("/collections/docs/documents")).json()["documents"]
    assert sorted(d["path"] for d in documents) == sorted(corpus["documents"])
    assert (await client.get("/collections/nope/documents")).status_code == 404


async def test_migrations_are_recorded_once(rag, database_url) -> None:
    client, app = rag
    state: RagState = app.state.rag
    assert await state.pg.migrate() == []
    versions = sql_rows(database_url, "SELECT version FROM schema_migrations")
    assert versions == [(1,)]
    tables = {r[0] for r in sql_rows(database_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"collections", "documents", "chunks", "search_logs", "system_settings", "user_preferences"} <= tables


async def test_qdrant_points_carry_collection_document_and_chunk(rag) -> None:
    client, app = rag
    report = await index_corpus(client)
    state: RagState = app.state.rag
    client_q = await state.vectors._get()
    points, _ = await client_q.scroll(qdrant_name("docs"), limit=1000, with_payload=True)
    assert len(points) == report["chunks_added"]
    ids = {d["document_id"] for d in report["documents"]}
    for point in points:
        assert point.payload["collection"] == "docs"
        assert point.payload["document_id"] in ids
        assert isinstance(point.payload["chunk"], int)


async def test_health_names_every_dependency_and_metrics_count_chunks(rag) -> None:
    client, _ = rag
    health = await client.get("/health")
    assert health.status_code == 200, health.text
    assert health.json()["dependencies"] == {"postgres": "ok", "qdrant": "ok", "embedding": "ok", "gateway": "ok",
                                             "text_analyzer": "ok"}
    report = await index_corpus(client)
    metrics = (await client.get("/metrics")).text
    assert f"rag_chunks_written_total {float(report['chunks_added'])}" in metrics
    warm = await client.post("/prewarm", json={"llm": True})
    assert warm.status_code == 200 and {"embed_ms", "qdrant_ms", "llm_ms"} <= set(warm.json()["timings"])
