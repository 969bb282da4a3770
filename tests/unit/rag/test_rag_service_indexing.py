"""Indexing is idempotent and keyed by content; deletes leave nothing behind; restarts lose nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from services.rag.clients.qdrant import qdrant_name
from services.rag.state import RagState
from tests.support.metrics import metric
from tests.support.rag import index_corpus, rag_settings, running_rag, sql_rows


async def qdrant_ids(app, collection: str = "docs") -> set[str]:
    state: RagState = app.state.rag
    client = await state.vectors._get()
    if not await client.collection_exists(qdrant_name(collection)):
        return set()
    points, _ = await client.scroll(qdrant_name(collection), limit=10_000)
    return {str(point.id) for point in points}


def chunk_ids(database_url: str, path: str | None = None) -> set[str]:
    if path is None:
        return {str(r[0]) for r in sql_rows(database_url, "SELECT id FROM chunks")}
    return {str(r[0]) for r in sql_rows(
        database_url, "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.path = %s", path)}


async def test_second_run_writes_nothing(rag, database_url) -> None:
    client, app = rag
    first = await index_corpus(client)
    before_pg, before_q = chunk_ids(database_url), await qdrant_ids(app)
    stamps = sql_rows(database_url, "SELECT id, indexed_at FROM documents ORDER BY id")
    second = await index_corpus(client)
    assert second["chunks_added"] == 0 and second["chunks_removed"] == 0
    assert second["chunks_unchanged"] == first["chunks_added"]
    assert {d["status"] for d in second["documents"]} == {"unchanged"}
    assert chunk_ids(database_url) == before_pg == before_q == await qdrant_ids(app)
    assert sql_rows(database_url, "SELECT id, indexed_at FROM documents ORDER BY id") == stamps


async def test_changed_file_replaces_only_its_changed_chunks(rag, database_url, tmp_path: Path) -> None:
    client, app = rag
    await index_corpus(client)
    others = chunk_ids(database_url) - chunk_ids(database_url, "coffee.txt")
    coffee_before = chunk_ids(database_url, "coffee.txt")
    path = tmp_path / "documents" / "coffee.txt"
    path.write_text(path.read_text(encoding="utf-8") + "\nDecaf beans are processed with water.\n",
                    encoding="utf-8")
    report = await index_corpus(client)
    changed = [d for d in report["documents"] if d["status"] != "unchanged"]
    assert [d["path"] for d in changed] == ["coffee.txt"]
    assert report["chunks_added"] >= 1
    coffee_after = chunk_ids(database_url, "coffee.txt")
    assert coffee_after != coffee_before
    assert chunk_ids(database_url) - coffee_after == others
    assert await qdrant_ids(app) == chunk_ids(database_url)
    found = (await client.post("/search", json={"query": "How are decaf beans processed?",
                                                "collection": "docs"})).json()["results"]
    assert found[0]["document"] == "coffee.txt" and "Decaf" in found[0]["text"]


async def test_unchanged_chunks_keep_their_ids_when_a_file_grows(tmp_path, models_dir, database_url,
                                                                  embedding_url, gateway_url) -> None:
    docs = tmp_path / "documents"
    docs.mkdir()
    sentences = [f"Fact number {n} says that the {n}th bucket holds {n * 3} apples." for n in range(40)]
    (docs / "facts.txt").write_text(" ".join(sentences), encoding="utf-8")
    settings = rag_settings(tmp_path, models_dir, database_url, embedding_url, gateway_url,
                            CHUNK_TOKENS=64, CHUNK_OVERLAP=0)
    async with running_rag(settings) as (client, app):
        first = await index_corpus(client)
        before = chunk_ids(database_url)
        (docs / "facts.txt").write_text(" ".join(sentences) + " A new closing fact about pears.", encoding="utf-8")
        second = await index_corpus(client)
        after = chunk_ids(database_url)
        assert first["chunks_added"] > 3
        # only the tail changed: every earlier chunk keeps its id and is not embedded again
        assert 1 <= second["chunks_added"] <= 2 and second["chunks_removed"] <= 1
        assert len(before & after) == first["chunks_added"] - second["chunks_removed"] >= first["chunks_added"] - 1
        assert len(after) == len(before) + second["chunks_added"] - second["chunks_removed"]
        assert await qdrant_ids(app) == after


async def test_deleting_a_document_leaves_no_vectors_rows_or_bm25_terms(rag, database_url) -> None:
    client, app = rag
    report = await index_corpus(client)
    coffee = next(d for d in report["documents"] if d["path"] == "coffee.txt")
    gone = chunk_ids(database_url, "coffee.txt")
    response = await client.delete(f"/collections/docs/documents/{coffee['document_id']}")
    assert response.status_code == 200
    assert response.json()["chunks_removed"] == len(gone) > 0
    assert chunk_ids(database_url, "coffee.txt") == set()
    assert not sql_rows(database_url, "SELECT 1 FROM documents WHERE path = 'coffee.txt'")
    assert not gone & await qdrant_ids(app)
    state: RagState = app.state.rag
    assert not any(str(chunk_id) in state.bm25["docs"] for chunk_id in gone)
    results = (await client.post("/search", json={"query": "French press coffee steep",
                                                  "collection": "docs"})).json()["results"]
    assert all(r["document"] != "coffee.txt" for r in results)
    again = await client.delete(f"/collections/docs/documents/{coffee['document_id']}")
    assert again.status_code == 404


async def test_deleting_a_collection_removes_everything(rag, database_url) -> None:
    client, app = rag
    await index_corpus(client)
    assert (await client.delete("/collections/docs")).status_code == 200
    assert sql_rows(database_url, "SELECT count(*) FROM chunks") == [(0,)]
    assert sql_rows(database_url, "SELECT count(*) FROM documents") == [(0,)]
    assert await qdrant_ids(app) == set()
    assert (await client.post("/search", json={"query": "coffee", "collection": "docs"})).status_code == 404
    assert (await client.delete("/collections/docs")).status_code == 404


async def test_upload_is_indexed_and_kept_under_documents(rag, tmp_path: Path) -> None:
    client, _ = rag
    note = "The staging server is rebooted every Sunday at 04:30 for kernel updates."
    files = [("files", ("ops-note.md", note.encode(), "text/markdown")),
             ("files", ("empty.txt", b"", "text/plain"))]
    response = await client.post("/index", data={"collection": "uploads"}, files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [d["path"] for d in body["documents"]] == ["uploads/uploads/ops-note.md"]
    assert body["skipped"] == [{"path": "uploads/uploads/empty.txt", "reason": "empty file (0 bytes)"}]
    assert (tmp_path / "documents" / "uploads" / "uploads" / "ops-note.md").read_text() == note
    assert not (tmp_path / "documents" / "uploads" / "uploads" / "empty.txt").exists()
    found = (await client.post("/search", json={"query": "When is the staging server rebooted?",
                                                "collection": "uploads"})).json()["results"]
    assert found[0]["text"].strip() == note


async def test_restart_keeps_everything_indexed(tmp_path, models_dir, database_url, embedding_url, gateway_url,
                                               corpus) -> None:
    settings = rag_settings(tmp_path, models_dir, database_url, embedding_url, gateway_url)
    question = corpus["questions"][0]
    async with running_rag(settings) as (client, _):
        first = await index_corpus(client)
        before = (await client.post("/search", json={"query": question["question"], "collection": "docs"})).json()
    async with running_rag(settings) as (client, app):
        deadline = time.monotonic() + 30
        while "docs" not in app.state.rag.vectors.in_memory() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert "docs" in app.state.rag.vectors.in_memory()  # loaded at start-up, before any search
        after = (await client.post("/search", json={"query": question["question"], "collection": "docs"})).json()
        assert [r["text"] for r in after["results"]] == [r["text"] for r in before["results"]]
        state: RagState = app.state.rag
        assert len(state.bm25["docs"]) == first["chunks_added"]
        again = await index_corpus(client)
        assert again["chunks_added"] == 0


async def test_the_bm25_gauge_follows_deletes_and_restarts(tmp_path, models_dir, database_url, embedding_url,
                                                          gateway_url, corpus) -> None:
    settings = rag_settings(tmp_path, models_dir, database_url, embedding_url, gateway_url)
    async with running_rag(settings) as (client, _):
        report = await index_corpus(client)
        indexed = report["chunks_added"]
        assert metric((await client.get("/metrics")).text, "rag_bm25_chunks") == indexed
        coffee = next(d for d in report["documents"] if d["path"] == "coffee.txt")
        deleted = (await client.delete(f"/collections/docs/documents/{coffee['document_id']}")).json()
        left = indexed - deleted["chunks_removed"]
        assert metric((await client.get("/metrics")).text, "rag_bm25_chunks") == left
    async with running_rag(settings) as (client, app):
        await app.state.rag.ensure_ready()
        assert metric((await client.get("/metrics")).text, "rag_bm25_chunks") == left


async def test_deleting_an_uploaded_document_removes_the_kept_copy(rag, tmp_path: Path) -> None:
    client, _ = rag
    files = [("files", ("draft.md", b"Quarterly planning notes for the lighthouse.", "text/markdown"))]
    report = (await client.post("/index", data={"collection": "drafts"}, files=files)).json()
    kept = tmp_path / "documents" / "uploads" / "drafts" / "draft.md"
    assert kept.is_file()
    document_id = report["documents"][0]["document_id"]
    assert (await client.delete(f"/collections/drafts/documents/{document_id}")).status_code == 200
    assert not kept.exists()
    again = (await client.post("/index", data={"collection": "drafts"}, files=files)).json()
    assert again["documents"][0]["status"] == "added" and kept.is_file()
    assert (await client.delete("/collections/drafts")).status_code == 200
    assert not kept.parent.exists()
