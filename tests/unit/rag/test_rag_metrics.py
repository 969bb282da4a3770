"""The RAG service's domain metrics: stages, empty retrievals, top scores, collection sizes, indexing failures."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from tests.support.metrics import metric
from tests.support.rag import index_corpus


async def page(client: httpx.AsyncClient) -> str:
    return (await client.get("/metrics")).text


def stage_count(text: str, stage: str) -> float:
    return metric(text, f'rag_retrieval_seconds_count{{stage="{stage}"}}')


async def test_every_series_exists_before_the_first_request(rag) -> None:
    client, _ = rag
    text = await page(client)
    for endpoint in ("search", "query"):
        assert metric(text, f'rag_retrievals_total{{endpoint="{endpoint}"}}') == 0
        assert metric(text, f'rag_empty_retrievals_total{{endpoint="{endpoint}"}}') == 0
    for reason in ("unreadable", "no_text", "empty_file", "outside_documents", "dependency_unavailable"):
        assert metric(text, f'rag_indexing_failures_total{{reason="{reason}"}}') == 0


async def test_stages_are_timed_apart_and_unmatched_questions_count_as_empty(rag) -> None:
    client, _ = rag
    await index_corpus(client)
    await client.post("/search", json={"query": "Olympus Mons volcano", "collection": "docs"})
    text = await page(client)
    assert {stage: stage_count(text, stage) for stage in ("embed", "dense", "bm25", "fusion", "postgres", "total")} \
        == dict.fromkeys(("embed", "dense", "bm25", "fusion", "postgres", "total"), 1)
    hybrid = (await client.post("/search", json={"query": "Olympus Mons volcano", "collection": "docs"})).json()
    assert hybrid["timings"]["fusion_ms"] > 0 and hybrid["timings"]["bm25_ms"] > 0
    await client.post("/search", json={"query": "Olympus Mons volcano", "collection": "docs", "hybrid": False})
    text = await page(client)
    assert stage_count(text, "dense") == 3 and stage_count(text, "bm25") == 2 and stage_count(text, "fusion") == 2
    assert metric(text, 'rag_retrievals_total{endpoint="search"}') == 3
    assert metric(text, 'rag_empty_retrievals_total{endpoint="search"}') == 0
    assert metric(text, "rag_retrieval_top_score_count") == 3
    # a close match: the best dense similarity lands high in the histogram
    assert metric(text, 'rag_retrieval_top_score_bucket{le="0.3"}') == 0
    # a question nothing in the collection matches: results come back, but it counts as empty
    unrelated = "zzyzx qwxv plmbrt"
    dense = (await client.post("/search", json={"query": unrelated, "collection": "docs", "hybrid": False})).json()
    assert dense["results"] and dense["results"][0]["score"] < 0.2
    assert (await client.post("/search", json={"query": unrelated, "collection": "docs"})).json()["results"]
    text = await page(client)
    assert metric(text, 'rag_retrievals_total{endpoint="search"}') == 5
    assert metric(text, 'rag_empty_retrievals_total{endpoint="search"}') == 2


async def test_collection_gauges_follow_index_delete_and_drop(rag, corpus) -> None:
    client, _ = rag
    report = await index_corpus(client)
    await index_corpus(client, "other", paths=["coffee.txt"])
    text = await page(client)
    assert metric(text, 'rag_collection_documents{collection="docs"}') == len(corpus["documents"])
    assert metric(text, 'rag_collection_chunks{collection="docs"}') == report["chunks_added"]
    assert metric(text, 'rag_collection_documents{collection="other"}') == 1
    first = report["documents"][0]
    await client.delete(f"/collections/docs/documents/{first['document_id']}")
    text = await page(client)
    assert metric(text, 'rag_collection_documents{collection="docs"}') == len(corpus["documents"]) - 1
    assert metric(text, 'rag_collection_chunks{collection="docs"}') == report["chunks_added"] - first["chunks"]
    assert (await client.delete("/collections/other")).status_code == 200
    assert 'collection="other"' not in await page(client)


async def test_indexing_failures_are_counted_by_reason(rag, tmp_path: Path) -> None:
    client, _ = rag
    bad = tmp_path / "documents" / "bad"  # a folder of its own, so the corpus is not indexed too
    bad.mkdir()
    (bad / "blob.bin").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "secret.txt").write_text("outside", encoding="utf-8")
    os.symlink(tmp_path / "secret.txt", bad / "escape.txt")
    (bad / "blank.md").write_text("   \n\n", encoding="utf-8")  # whitespace only: no text
    (bad / "script.html").write_text("<html><script>var a = 1;</script></html>", encoding="utf-8")
    (bad / "good.md").write_text("# Good\nThis one is indexed.\n", encoding="utf-8")
    assert (await client.post("/index", json={"collection": "docs", "paths": ["bad"]})).status_code == 200
    await client.post("/index", data={"collection": "docs"}, files=[("files", ("empty.md", b"", "text/markdown"))])
    text = await page(client)
    counts = {reason: metric(text, f'rag_indexing_failures_total{{reason="{reason}"}}')
              for reason in ("unreadable", "outside_documents", "no_text", "empty_file", "dependency_unavailable")}
    assert counts == {"unreadable": 1, "outside_documents": 1, "no_text": 1, "empty_file": 2,
                      "dependency_unavailable": 0}
